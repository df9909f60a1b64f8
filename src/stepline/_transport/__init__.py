"""How the SDK reaches engines and apps.

Effects and their sync and async drivers, the performers over httpx, kept-alive
HTTP/1.1 connections (and HTTP/1.1 without I/O), and calls to an ASGI app in process.
"""
