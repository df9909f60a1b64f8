"""In production, an app's answer counts only if it is signed with the engine's key.

Whoever answers at an app's registered URL (a hijacked host, a stale DNS entry, a
proxy's error page) would otherwise choose the run's next steps: its outputs, its
events, the AI gateway's destinations. ``stepline start`` signs every call; the SDKs
(ours and the official ones) sign their answer with the key that validated it, over the
answer's body and a timestamp, as ``X-Inngest-Signature``. A streamed answer (201)
carries the signature of its inner body in its JSON envelope's headers.

An unsigned or badly signed answer becomes a failed attempt with nothing of its body
kept. It is retried like any failed attempt: a load balancer's 502 page during a deploy
is unsigned too, and a key rotation half done or a clock step heals by itself; a
forger gains nothing from the retries, as none of its answers is ever applied. Only
its ``X-Inngest-No-Retry`` is heeded: an app that cannot verify the engine's call (a
key mismatch) answers an unsigned 401 asking for no retry, and heeding it can only
end the run sooner.

Apps served in this process (``inprocess://``) are exempt: nothing crosses a network; so
are Connect workers (``connect://``), whose socket proved the key at ``/v0/connect/start``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping, Sequence

from stepline import _errors
from stepline._protocol import headers as wire
from stepline._protocol import signing
from stepline.engine._clock import Clock
from stepline.engine._driver import CONNECT_SCHEME, IN_PROCESS_SCHEME, Driver
from stepline.engine._wire.response import RawResponse, unwrap_stream

logger = logging.getLogger("stepline.engine")


def signature_problem(raw: RawResponse, keys: Sequence[str], *, now: float) -> str | None:
    """Why an answer that arrived is not validly signed by one of ``keys``, or None.

    Pure: ``now`` is the engine clock's time (the freshness window is the requests' one).
    """
    body, found = raw.body, raw.headers
    if raw.status == 201:  # streamed: the signature is inside the envelope
        try:
            _status, body, found = unwrap_stream(raw.body)
        except ValueError as exc:
            return f"streamed answer without a valid envelope ({exc})"
    header = next((v for k, v in found.items() if k.lower() == wire.SIGNATURE), None)
    try:
        signing.verify(body, header, keys, now=now)
    except (_errors.SignatureVerificationError, ValueError) as exc:
        return str(exc)
    return None


class VerifyingDriver:
    """Wraps the engine's driver: unsigned answers to calls come back as failures."""

    def __init__(self, inner: Driver, keys: Sequence[str], clock: Clock) -> None:
        self.inner = inner
        self.keys = tuple(keys)
        self.clock = clock

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        """Make the call; an answer that is not signed with our key is refused."""
        answer = await self.inner.request(method, url, body, headers, timeout)
        if answer.error is not None or url.startswith(
            (IN_PROCESS_SCHEME + ":", CONNECT_SCHEME + ":")
        ):
            return answer
        problem = signature_problem(answer, self.keys, now=self.clock.now())
        if problem is None:
            return answer
        where = _where(url)
        logger.warning(
            "refused the unsigned answer of %s (status %d): %s; its body was not used: %r",
            where,
            answer.status,
            problem.rstrip("."),
            answer.body[:200],
        )
        message = (
            f"the app at {where} answered (status {answer.status}) without a valid "
            f"signature ({problem.rstrip('.')}). In production every answer must be signed "
            "with the engine's signing key: check that the app runs in production mode with "
            "the same signing key. Nothing of the answer was used."
        )
        if answer.status == 401:
            message += " (A 401 is what an app answers when it cannot verify the engine's call.)"
        # the one hint kept: an app that could not verify us asks for no retry, which can
        # only end the run sooner (as a forger could by answering garbage anyway)
        hint = {k: v for k, v in _lowered(answer.headers).items() if k == wire.NO_RETRY.lower()}
        return RawResponse(0, hint, b"", error=message, error_name="UnsignedAnswer")

    async def close(self) -> None:
        """Close the wrapped driver."""
        await self.inner.close()


def _lowered(found: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in found.items()}


def _where(url: str) -> str:
    """The URL without its query (which names the function and step only)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
