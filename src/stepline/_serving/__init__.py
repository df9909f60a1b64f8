"""Serving functions from a web app.

The serve options and the serve ritual every adapter shares, the credentials each
route accepts, bounded request bodies, ASGI scopes, cross-site request checks, dev-mode
autosync and the ``engine=`` option.
"""
