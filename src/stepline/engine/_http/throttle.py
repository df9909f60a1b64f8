"""How fast a secret may be guessed at (the dashboard's sign-in key, the signal hook's
tokens): failures per client and in all; and how many requests a client may have open.

Each client (its address; an IPv6 address by its /64, which one machine usually holds
whole) has a bucket of ``per_client`` failed sign-ins that refills over ``window``
seconds, and all clients share one of ``overall``. An attempt while either is empty is
refused (429, with ``Retry-After``) without looking at the key. A correct key empties
nobody's bucket and gives its client a fresh one.

Nothing locks anyone out for good: a bucket refills by itself, one attempt at a time,
and a session already signed in or a bearer token is never affected. An attacker can
at worst keep the shared bucket empty while the attack lasts, which then slows
everyone's sign-in to the refill rate, unless the limiter ``spares_clean`` clients: then
the shared bucket refuses only clients that failed within the last ``window`` (an
attacker's addresses, each let one failure a window past an empty shared bucket), never
one that has not (the callers that hold a real secret).

``Slots`` caps the requests one client, and all together, may have open at once: taken
before a request's body is read, so many concurrent requests from one address never
make the engine hold more than a few of their bodies. Pure: the clock is a parameter.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math

__all__ = ["SignInLimiter", "Slots", "client_key"]


@dataclasses.dataclass
class _Bucket:
    tokens: float
    at: float
    #: when the client last made a failure the shared bucket counts
    failed_at: float = -math.inf


class SignInLimiter:
    """Token buckets of failed sign-ins, per client and overall.

    Args:
        per_client: failures one client may make in a burst (and per ``window``).
        overall: failures all clients together may make in a burst (and per ``window``).
        window: seconds in which an empty bucket fills up again.
        max_clients: clients remembered at most (the ones idle longest are forgotten).
        spares_clean: the shared bucket refuses only clients that failed within the
            last ``window``; a client that has not is always let try.
    """

    def __init__(
        self,
        *,
        per_client: int = 5,
        overall: int = 100,
        window: float = 60.0,
        max_clients: int = 10_000,
        spares_clean: bool = False,
    ) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.max_clients = max_clients
        self.spares_clean = spares_clean
        self._clients: dict[str, _Bucket] = {}
        self._all = _Bucket(float(overall), -math.inf)
        self._refused: set[str] = set()

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try a key; 0 if it may now.

        Args:
            client: the client's key (``client_key``).
            now: the current time (seconds, any epoch, never going back).
        """
        bucket = self._clients.get(client)
        clean = bucket is None or now - bucket.failed_at >= self.window
        waits = [0.0 if self.spares_clean and clean else self._wait(self._all, self.overall, now)]
        if bucket is not None:
            waits.append(self._wait(bucket, self.per_client, now))
        wait = max(waits)
        if wait <= 0:
            self._refused.discard(client)
        return max(wait, 0.0)

    def first_refusal(self, client: str) -> bool:
        """True the first time ``client`` is refused since it was last allowed to try."""
        first = client not in self._refused
        if first and len(self._refused) < self.max_clients:
            self._refused.add(client)
        return first

    def failed(self, client: str, now: float, *, overall: bool = True) -> None:
        """Count a wrong key from ``client``.

        Args:
            client: the client's key (``client_key``).
            now: the current time.
            overall: count it in the shared bucket too (False: a failure that is no guess,
                such as a real token used twice, only spends the client's own bucket).
        """
        bucket = self._clients.pop(client, None)  # re-inserted last: the newest
        if bucket is None:
            bucket = _Bucket(float(self.per_client), now)
            while len(self._clients) >= self.max_clients:
                del self._clients[next(iter(self._clients))]
        self._take(bucket, self.per_client, now)
        self._clients[client] = bucket
        if overall:
            bucket.failed_at = now
            self._take(self._all, self.overall, now)

    def succeeded(self, client: str) -> None:
        """A correct key: forget the client's failures."""
        self._clients.pop(client, None)
        self._refused.discard(client)

    def _refill(self, bucket: _Bucket, size: int, now: float) -> None:
        if now > bucket.at:
            gained = (now - bucket.at) * size / self.window if bucket.at > -math.inf else size
            bucket.tokens = min(float(size), bucket.tokens + gained)
            bucket.at = now

    def _wait(self, bucket: _Bucket, size: int, now: float) -> float:
        self._refill(bucket, size, now)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) * self.window / size

    def _take(self, bucket: _Bucket, size: int, now: float) -> None:
        self._refill(bucket, size, now)
        bucket.tokens = max(bucket.tokens - 1, 0.0)


def client_key(address: str | None) -> str:
    """The key a client's failures are counted under: its address, an IPv6 one by /64.

    Args:
        address: the remote address, if the server knows it.

    Returns:
        The key (``"?"`` for an unknown address: those share one bucket).
    """
    if not address:
        return "?"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Slots:
    """Requests open at once, per client and in all; a request holds a slot until it ends.

    Args:
        per_client: requests one client may have open.
        overall: requests all clients together may have open (None: no cap).
    """

    def __init__(self, *, per_client: int, overall: int | None = None) -> None:
        self.per_client = per_client
        self.overall = overall
        self._open: dict[str, int] = {}
        self._total = 0

    def take(self, client: str) -> bool:
        """Take a slot for ``client``: False (and none taken) when it, or all, have none."""
        held = self._open.get(client, 0)
        if held >= self.per_client or (self.overall is not None and self._total >= self.overall):
            return False
        self._open[client] = held + 1
        self._total += 1
        return True

    def give(self, client: str) -> None:
        """Give back a slot ``take`` gave ``client`` (the table keeps only open ones)."""
        held = self._open.get(client, 0)
        if held <= 1:
            self._open.pop(client, None)
        else:
            self._open[client] = held - 1
        self._total = max(self._total - 1, 0)

    def held(self, client: str) -> int:
        """The slots ``client`` holds now."""
        return self._open.get(client, 0)
