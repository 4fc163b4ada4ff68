"""Which resolved addresses a delivery may dial.

Delivery resolves a job's host once, asks this module about every answer and
dials only the answers it permits, so the verdict here is the whole SSRF
defence (see spec/OUTBOUND.md). It is pure: `ipaddress` is used to parse and
to test membership, never for its `is_private`/`is_global` opinions, which
have changed between patch releases. The tables below are the IANA
special-purpose registries as OUTBOUND.md lists them; each entry carries a
label so a refusal reads like "127.0.0.2 is in 127.0.0.0/8 (loopback)".

Rules, in order:
1. An address inside an `allow_cidrs` network may be dialled. An IPv4
   network also admits the IPv4-mapped form (`::ffff:a.b.c.d`) of its
   addresses, because dialling that form is dialling the IPv4 address.
2. IPv4: refused inside a listed range, permitted otherwise.
3. IPv4-mapped `::ffff:0:0/96` and NAT64 `64:ff9b::/96` are judged by the
   IPv4 address they embed (both lie outside 2000::/3, yet reach exactly that
   IPv4 host): a refused IPv4 stays refused in either form, a public one is
   permitted. An IPv4 allow network admits the mapped form only: a NAT64
   address is translated by a gateway elsewhere, so letting it through takes
   an IPv6 allow network that covers it.
4. Other IPv6: only 2000::/3 (global unicast) may be dialled, minus the listed
   ranges (Teredo and 6to4 embed IPv4 addresses, the rest are documentation
   or anycast). Well-known ranges outside 2000::/3 get their own label.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(cidr), label)
    for cidr, label in (
        ("0.0.0.0/8", "this network; reaches the local host"),
        ("10.0.0.0/8", "private-use"),
        ("100.64.0.0/10", "shared address space, CGNAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, cloud metadata"),
        ("172.16.0.0/12", "private-use"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation, TEST-NET-1"),
        ("192.31.196.0/24", "AS112-v4"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private-use"),
        ("192.175.48.0/24", "direct delegation AS112 service"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation, TEST-NET-2"),
        ("203.0.113.0/24", "documentation, TEST-NET-3"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved, limited broadcast"),
    )
)

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

# Refused although inside 2000::/3.
_V6_REFUSED_INSIDE: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(cidr), label)
    for cidr, label in (
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignments, Teredo embeds IPv4"),
        ("2002::/16", "6to4 embeds IPv4"),
        ("2620:4f:8000::/48", "direct delegation AS112 service"),
        ("3fff::/20", "documentation"),
    )
)

# Outside 2000::/3 everything is refused; these only name the reason.
_V6_OUTSIDE_LABELS: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(cidr), label)
    for cidr, label in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible, deprecated"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
        ("100::/64", "discard-only"),
        ("5f00::/16", "SRv6 SIDs"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local, deprecated"),
        ("ff00::/8", "multicast"),
        ("::/8", "reserved"),
    )
)

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)


def _v4_match(ip: ipaddress.IPv4Address) -> str | None:
    """ "in <range> (<label>)" for the listed range holding `ip`, if any."""
    for net, label in _V4_REFUSED:
        if ip in net:
            return f"in {net} ({label})"
    return None


def _v6_refusal(ip: ipaddress.IPv6Address) -> str | None:
    if ip in _GLOBAL_UNICAST:
        for net, label in _V6_REFUSED_INSIDE:
            if ip in net:
                return f"{ip} is in {net} ({label})"
        return None
    for net, label in _V6_OUTSIDE_LABELS:
        if ip in net:
            return f"{ip} is in {net} ({label}), outside 2000::/3 (global unicast)"
    return f"{ip} is outside 2000::/3 (global unicast)"


class AddressPolicy:
    """The verdict on one resolved address; built once from the config."""

    def __init__(self, allow_cidrs: Sequence[str] = ()) -> None:
        allowed: list[IPNetwork] = []
        for cidr in allow_cidrs:
            try:
                allowed.append(ipaddress.ip_network(cidr.strip(), strict=True))
            except ValueError as exc:
                raise ValueError(f"not a CIDR network: {cidr!r} ({exc})") from None
        self.allow_cidrs: tuple[IPNetwork, ...] = tuple(allowed)
        self._allowed_v4 = tuple(n for n in allowed if isinstance(n, ipaddress.IPv4Network))
        self._allowed_v6 = tuple(n for n in allowed if isinstance(n, ipaddress.IPv6Network))

    def refusal(self, ip: IPAddress) -> str | None:
        """None when `ip` may be dialled, else why not, for the run's `error`."""
        if isinstance(ip, ipaddress.IPv4Address):
            if any(ip in net for net in self._allowed_v4):
                return None
            where = _v4_match(ip)
            return None if where is None else f"{ip} is {where}"
        if any(ip in net for net in self._allowed_v6):
            return None
        if ip in _MAPPED or ip in _NAT64:
            v4 = _embedded_v4(ip)
            if ip in _MAPPED and any(v4 in net for net in self._allowed_v4):
                return None
            where = _v4_match(v4)
            # Python 3.11 prints a mapped address as hex (::ffff:7f00:1).
            shown = f"::ffff:{v4}" if ip in _MAPPED else f"64:ff9b::{v4}"
            return None if where is None else f"{shown} embeds {v4}, which is {where}"
        return _v6_refusal(ip)

    def permits(self, ip: IPAddress) -> bool:
        return self.refusal(ip) is None
