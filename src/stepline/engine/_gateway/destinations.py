"""Where the AI gateway may send a request: public addresses, unless allow-listed. Pure.

An app's answer chooses the gateway's URL, so the engine must not become a proxy into
its own network: loopback, private (RFC 1918, unique local), link-local (the cloud
metadata services at 169.254.169.254 and fd00:ec2::254 among them), unspecified,
multicast, shared (CGNAT), reserved and other special-purpose addresses are refused,
including when written as an IPv6 form embedding one (IPv4-mapped, 6to4, NAT64,
Teredo). Loopback is allowed in dev mode (``Policy.loopback``). Every address a host
name resolves to is checked; the caller then connects to a checked address
(``_gateway``), so a second DNS answer cannot slip in between.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How to allow what the policy refuses (named in every refusal).
SETTING = "gateway_allow (--gateway-allow, STEPLINE_GATEWAY_ALLOW)"

_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified, 0.0.0.0/8"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("10.0.0.0/8", "private, RFC 1918"),
        ("172.16.0.0/12", "private, RFC 1918"),
        ("192.168.0.0/16", "private, RFC 1918"),
        ("100.64.0.0/10", "shared, carrier-grade NAT"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fc00::/7", "private, unique local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?)+", re.I)


def refusal(address: Address) -> str | None:
    """Why the gateway must not call ``address`` by default, or None if it is public.

    Args:
        address: one resolved (or literal) address.

    Returns:
        A short description (``"loopback"``, ``"private, RFC 1918"``, ...).
    """
    if address in _METADATA:
        return "cloud metadata service, link-local"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded(address)
        if inner is not None:
            kind, v4 = inner
            why = refusal(v4)
            return None if why is None else f"{why}, as {kind} IPv6 address of {v4}"
        ranges: Iterable[tuple[Network, str]] = _V6_RANGES
    else:
        ranges = _V4_RANGES
    for network, why in ranges:
        if address in network:
            return why
    if address.is_reserved:
        return "reserved"
    if not address.is_global:  # documentation, benchmarking, protocol assignments ...
        return "special-purpose range"
    return None


def _embedded(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries (and the form's name), if any."""
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "a 6to4", address.sixtofour
    if address.teredo is not None:
        return "a Teredo", address.teredo[1]
    if address in _NAT64:
        return "a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return "an IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The default refusals, less what the allow-list names.

    Attributes:
        networks: allowed address ranges.
        names: allowed host names (lowercase, no trailing dot): any address they
            resolve to is called.
        loopback: loopback addresses (127.0.0.0/8, ::1, and their IPv4-mapped forms)
            are allowed too: ``stepline dev`` runs on the developer's machine, where a
            local model server or a test suite's mock LLM is what ``step.ai.infer``
            should reach, as Inngest's dev server does.
    """

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()
    loopback: bool = False

    @classmethod
    def parse(cls, entries: Sequence[str], *, loopback: bool = False) -> Policy:
        """Read an allow-list of CIDRs (or single addresses) and host names.

        Args:
            entries: the allow-list.
            loopback: allow loopback addresses as well (dev mode).

        Raises:
            ValueError: an entry is neither.
        """
        networks: list[Network] = []
        names: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not _HOST_NAME.fullmatch(entry):
                raise ValueError(f"{raw!r} is neither a CIDR (10.0.0.0/8, ::1/128) nor a host name")
            names.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(names), loopback)

    def check(self, host: str, addresses: Sequence[Address]) -> str | None:
        """Why a request to ``host``, resolved to ``addresses``, is refused, or None.

        Every address must pass: a name that resolves to one public and one private
        address is refused (the connection could land on either).
        """
        if host.lower().rstrip(".") in self.names:
            return None
        if not addresses:
            return f"{host} resolved to no address"
        for address in addresses:
            if self._allowed(address):
                continue
            why = refusal(address)
            if why is not None:
                shown = host if _same(host, address) else f"{host} ({address})"
                return (
                    f"{shown} is not a public address ({why}); the AI gateway calls only "
                    f"public addresses unless {SETTING} allows it"
                )
        return None

    def _allowed(self, address: Address) -> bool:
        forms: list[Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        if self.loopback and any(form.is_loopback for form in forms):
            return True
        return any(form in network for form in forms for network in self.networks)


def _same(host: str, address: Address) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == address
    except ValueError:
        return False
