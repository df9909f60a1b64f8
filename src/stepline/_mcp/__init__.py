"""``stepline mcp``: the engine's REST API as tools for an assistant, over MCP's stdio.

``tools`` says which tools there are and which REST call each makes (pure); ``server``
builds the MCP server from them and makes the calls with the SDK's own REST flows, so a
tool needs what the route needs: the signing key in production (``--signing-key`` or
``STEPLINE_SIGNING_KEY``), nothing in dev mode. Read-only by default; the tools that
change something (cancel, replay, signal, pause, resume) exist only with
``--allow-writes``.
"""
