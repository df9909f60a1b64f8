"""Connect's wire, shared by the engine's gateway and the SDK's worker (no dependency).

``proto`` is the protobuf codec of ``connect.proto``'s messages and ``kinds`` the message
kinds and the frame around each: the engine imports them from here, so the SDK's worker
needs none of the engine's extras. The worker (public as ``stepline.connect``): ``worker``
(the session: handshake, calls, drain, reconnect), ``link`` (the socket, frames, backoff),
``calls`` (a call as the POST it stands for, its reply; pure) and ``cli`` (``python -m
stepline.connect``).
"""
