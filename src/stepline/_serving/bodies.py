"""Reading a request body in chunks, never holding more than a limit (plus one chunk).

Adapters read the body themselves and hand it over whole, so a framework's "read it all"
(``await request.body()``, ``request.get_data()``) would buffer whatever a client sends,
``Transfer-Encoding: chunked`` bodies with no ``Content-Length`` included, before any
limit is checked. These readers stop once the body is past ``limit``: the caller (the
``CommHandler`` or the kit) then answers 413 from the length alone. A declared
``Content-Length`` past the limit is refused before anything is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable

from stepline import _errors
from stepline._comm import CommHandler, CommResponse

__all__ = ["CHUNK", "declared_too_large", "read_async", "read_sync", "too_large"]

#: Bytes asked for per read.
CHUNK = 64 * 1024


def declared_too_large(content_length: str | None, limit: int) -> int | None:
    """The declared ``Content-Length`` when it is past ``limit``, else None.

    A missing or malformed length is left to the server (which refuses a malformed one)
    and to the bounded read.
    """
    text = (content_length or "").strip()
    if not (text.isascii() and text.isdigit()):
        return None
    size = int(text) if len(text) <= 18 else 10**18  # no 5,000-digit int() (a ValueError)
    return size if size > limit else None


def read_sync(read: Callable[[int], bytes], limit: int) -> bytes:
    """Read with ``read(n)`` until EOF or past ``limit``: at most ``limit + 1`` bytes kept."""
    body = bytearray()
    while len(body) <= limit:
        chunk = read(min(CHUNK, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
    return bytes(body)


async def read_async(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Collect ``chunks`` until they end or pass ``limit`` (the rest is never read)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)


def too_large(handler: CommHandler, size: int) -> CommResponse:
    """The handler's own 413 for a body declared larger than it accepts."""
    error = _errors.BodyTooLargeError(
        f"request body of {size} bytes exceeds {handler.max_body_bytes}"
    )
    return CommResponse.from_error(error, handler.base_headers)
