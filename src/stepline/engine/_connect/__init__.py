"""Connect: workers that open a WebSocket to the engine and take their app's calls over it.

The official ``inngest`` package's Connect worker (``inngest.connect.connect``) speaks
``connect.proto``; the engine serves it: ``routes`` (``POST /v0/connect/start`` and the
gateway socket), ``gateway`` (one worker's session), ``hub`` (the connected workers, and
the ``connect://`` driver the engine's calls go through) and ``tokens``. The protobuf
codec and the message kinds are ``stepline._connect``'s, shared with the SDK's worker.
"""
