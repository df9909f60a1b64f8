"""The AI gateway: the engine's own HTTP call for a step's ``AIGateway`` op.

The URL, headers and body come from an app's answer, so the call is fenced in:

* only ``http``/``https`` URLs, to addresses ``_destinations`` finds public (or that
  ``gateway_allow`` names); the host is resolved once, every address checked, and the
  connection made to a checked address (the URL's host travels in ``Host`` and as the
  TLS server name), so no second DNS answer slips in between check and connect;
* no redirects followed, no proxy from the environment, no connection reused across
  calls (a pooled connection could carry another host's name);
* the answer read a chunk at a time up to the step output limit (it is stored as one);
* at most ``gateway_max_calls`` gateway steps per run.

A refused call fails its step at once (it would be refused again); the function sees a
step error it may catch. Transport errors and non-2xx answers are retried, as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from stepline import _serde
from stepline.engine._backoff import Backoff
from stepline.engine._config import EngineSettings
from stepline.engine._driver import read_httpx
from stepline.engine._gateway import destinations
from stepline.engine._model import Job, StepRecord

logger = logging.getLogger("stepline.engine")

#: The ops whose HTTP call the engine makes.
GATEWAY_OPS = frozenset({"AIGateway", "Gateway"})
TIMEOUT = 300.0
#: Attempts past the first before a failing call fails its step.
RETRIES = 4
#: Resolved addresses tried in turn when a connection is refused.
_TRIES = 4
#: Headers the engine sets itself (an app may not smuggle a ``Host`` past the check).
_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: The characters of an HTTP token (RFC 9110), the names Go canonicalises.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

Address = destinations.Address
Resolver = Callable[[str, int], Awaitable[list[Address]]]
Result = tuple[Any, bool, float | None]


class Refused(ValueError):
    """The call must not be made (bad URL, or a destination the policy refuses)."""


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayRequest:
    """What an op asks to call, checked for shape (not yet for where it goes).

    Attributes:
        url: the URL as given (with the Gemini key in its query, if any).
        where: the URL without its query, safe for errors and logs.
        host: the host name or address literal (no brackets).
        port: the port to connect to.
    """

    url: urllib.parse.SplitResult
    where: str
    host: str
    port: int
    headers: dict[str, str]
    body: bytes


def build(opts: dict[str, Any]) -> GatewayRequest:
    """The request an op's ``opts`` describe. Pure.

    Raises:
        Refused: not an ``http(s)`` URL with a host, or credentials in it.
    """
    url = str(opts.get("url") or "")
    headers = {"Content-Type": "application/json"}
    key = str(opts.get("auth_key") or "")
    fmt = str(opts.get("format") or "")
    if key:
        if fmt == "anthropic":
            headers["X-Api-Key"] = key
        elif fmt == "gemini":
            url += ("&" if "?" in url else "?") + "key=" + key
        elif fmt == "bedrock":
            headers["Authorization"] = key
        else:
            headers["Authorization"] = f"Bearer {key}"
    extra = opts.get("headers")
    if isinstance(extra, dict):
        for name, value in extra.items():
            if str(name).lower() not in _OURS:  # the adapter's value replaces ours
                headers[canonical(str(name))] = str(value)
    body = opts.get("body")
    raw = body.encode() if isinstance(body, str) else _serde.dumps(body).encode()
    try:
        split = urllib.parse.urlsplit(url)
        port = split.port or (443 if split.scheme == "https" else 80)
    except ValueError as exc:
        raise Refused(f"the URL is not valid ({exc})") from None
    host = split.hostname or ""
    if split.scheme not in ("http", "https") or not host:
        raise Refused("the URL must be http:// or https:// with a host")
    if split.username is not None or split.password is not None:
        raise Refused("credentials in the URL are not sent; use auth_key or headers")
    where = urllib.parse.urlunsplit((split.scheme, split.netloc, split.path, "", ""))
    return GatewayRequest(split, where, host, port, headers, raw)


def canonical(name: str) -> str:
    """A header name as Go's ``textproto.CanonicalMIMEHeaderKey`` writes it. Pure.

    Inngest's server sends gateway headers through Go's ``http.Header``, so a receiver
    sees ``X-Api-Key`` and ``Anthropic-Version``, and some (mock LLMs, proxies, signature
    schemes) compare names case-sensitively. A name that is not a plain token (a space,
    a colon, a non-ASCII letter) is left as it is, as Go does.
    """
    if not name or not all(c in _TOKEN for c in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def call_index(steps: Sequence[StepRecord], step_id: str | None) -> int:
    """The step's place among its run's gateway steps, in the order they were planned."""
    calls = sorted(
        (s for s in steps if s.op in GATEWAY_OPS), key=lambda s: (s.started_at or 0.0, s.step_id)
    )
    ids = [s.step_id for s in calls]
    return ids.index(step_id) if step_id in ids else len(ids)


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (an address literal is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    return found


class Gateway:
    """Makes gateway calls for one engine, under its destination policy and limits."""

    def __init__(self, settings: EngineSettings, *, resolver: Resolver = resolve) -> None:
        # dev mode runs on the developer's machine: its own model servers are fair game
        loopback = settings.mode == "dev"
        self.policy = destinations.Policy.parse(settings.gateway_allow, loopback=loopback)
        self.max_calls = settings.gateway_max_calls
        self.max_bytes = min(settings.max_body_bytes, settings.max_step_output_bytes)
        self.resolver = resolver

    async def call(self, opts: dict[str, Any], job: Job, backoff: Backoff, *, index: int) -> Result:
        """Perform the call; returns (memo, failed, retry delay or None)."""
        if index >= self.max_calls:
            message = (
                f"run {job.run_id} reached its limit of {self.max_calls} AI gateway calls; "
                "step.ai.infer is refused (raise gateway_max_calls, --gateway-max-calls, "
                "STEPLINE_GATEWAY_MAX_CALLS)"
            )
            logger.warning("%s", message)
            return _error("AIGatewayLimitError", message), True, None
        try:
            request = build(opts)
        except Refused as exc:
            return self._refused(job, str(opts.get("url") or "")[:200], str(exc))
        try:
            addresses = await self.resolver(request.host, request.port)
        except (OSError, UnicodeError, ValueError) as exc:
            return _retry_or_fail(job, backoff, f"could not resolve {request.host}: {exc}", "")
        refusal = self.policy.check(request.host, addresses)
        if refusal is not None:
            return self._refused(job, request.where, refusal)
        status, body, error = await self._send(request, addresses[:_TRIES])
        if error == "too large":
            message = (
                f"the answer of {request.where} is larger than {self.max_bytes} bytes, the "
                "limit on a step's output (max_step_output_bytes, STEPLINE_MAX_STEP_OUTPUT_BYTES)"
            )
            return _error("AIGatewayAnswerTooLarge", message), True, None
        if error is None and 200 <= status < 300:
            try:
                return {"data": _serde.loads(body)}, False, None
            except ValueError:
                return {"data": body.decode("utf-8", "replace")}, False, None
        if error is None:
            error = f"status {status}" + (" (redirects are not followed)" if status < 400 else "")
        return _retry_or_fail(job, backoff, error, body.decode("utf-8", "replace")[:2000])

    def _refused(self, job: Job, where: str, why: str) -> Result:
        message = f"AI gateway refused to call {where}: {why}"
        logger.warning("run %s step %s: %s", job.run_id, job.step_id, message)
        return _error("AIGatewayRefused", message), True, None

    async def _send(
        self, request: GatewayRequest, addresses: Sequence[Address]
    ) -> tuple[int, bytes, str | None]:
        """POST to the first checked address that connects: (status, body, error)."""
        url = request.url
        host_header = url.netloc.rpartition("@")[2]
        extensions = {"sni_hostname": request.host} if url.scheme == "https" else {}
        error = "no address to connect to"
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            for address in addresses:
                literal = f"[{address}]" if address.version == 6 else str(address)
                target = url._replace(netloc=f"{literal}:{request.port}").geturl()
                try:
                    built = client.build_request(
                        "POST",
                        target,
                        content=request.body,
                        headers={"Host": host_header, **request.headers},
                        extensions=extensions,
                        timeout=TIMEOUT,
                    )
                    response = await client.send(built, stream=True)
                except httpx.ConnectError as exc:
                    error = f"ConnectError: {exc}".rstrip(": ")
                    continue  # the next address the name resolved to
                except Exception as exc:  # timeouts, bad headers: an answer, never a raise
                    return 0, b"", f"{type(exc).__name__}: {exc}".rstrip(": ")
                try:
                    body = await read_httpx(response, self.max_bytes)
                except Exception as exc:
                    return 0, b"", f"{type(exc).__name__}: {exc}".rstrip(": ")
                finally:
                    await response.aclose()
                if body is None:
                    return 0, b"", "too large"
                return response.status_code, body, None
        return 0, b"", error


def _retry_or_fail(job: Job, backoff: Backoff, error: str, detail: str) -> Result:
    if job.attempt < RETRIES:
        return None, False, backoff.delay(job.attempt, job.job_id)
    failure = _error("AIGatewayError", f"Error making AI request: {error}")
    failure["error"]["stack"] = detail or error
    return failure, True, None


def _error(name: str, message: str) -> dict[str, Any]:
    return {"error": {"name": name, "message": message, "stack": None}}
