"""The address policy against hand-checked vectors and a naive oracle.

The vectors pin each listed range's edges (first and last address inside,
the neighbours outside); the oracle re-reads the published tables from
OUTBOUND.md as plain integer intervals, so hypothesis can compare the two on
addresses nobody thought to write down.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.address_policy import AddressPolicy, IPAddress

# -- the oracle: OUTBOUND.md's tables, as integer intervals --------------------


def words(text: str) -> list[str]:
    """Tables stay laid out as the spec prints them."""
    return text.split()


V4_TABLE = words(
    """
0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12
192.0.0.0/24 192.0.2.0/24 192.31.196.0/24 192.52.193.0/24 192.88.99.0/24
192.168.0.0/16 192.175.48.0/24 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24
224.0.0.0/4 240.0.0.0/4
"""
)
V6_REFUSED_INSIDE = words("2001::/23 2001:db8::/32 2002::/16 2620:4f:8000::/48 3fff::/20")
V6_OUTSIDE_EXAMPLES = words(
    """
::/8 64:ff9b:1::/48 100::/64 5f00::/16 fc00::/7 fe80::/10 fec0::/10 ff00::/8
"""
)


def _span(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr)
    return int(net.network_address), int(net.broadcast_address)


V4_SPANS = [_span(c) for c in V4_TABLE]
V6_INSIDE_SPANS = [_span(c) for c in V6_REFUSED_INSIDE]
MAPPED = _span("::ffff:0:0/96")
NAT64 = _span("64:ff9b::/96")
GLOBAL_UNICAST = _span("2000::/3")


def _within(value: int, span: tuple[int, int]) -> bool:
    return span[0] <= value <= span[1]


def oracle_refused(ip: IPAddress) -> bool:
    """What OUTBOUND.md says, with no allowlist."""
    n = int(ip)
    if ip.version == 4:
        return any(_within(n, s) for s in V4_SPANS)
    if _within(n, MAPPED) or _within(n, NAT64):
        return any(_within(n & 0xFFFFFFFF, s) for s in V4_SPANS)
    if not _within(n, GLOBAL_UNICAST):
        return True
    return any(_within(n, s) for s in V6_INSIDE_SPANS)


def oracle_permits(ip: IPAddress, allow: list[str]) -> bool:
    n = int(ip)
    for cidr in allow:
        version = ipaddress.ip_network(cidr).version
        same_family = version == ip.version and _within(n, _span(cidr))
        mapped_form = (
            version == 4
            and ip.version == 6
            and _within(n, MAPPED)
            and _within(n & 0xFFFFFFFF, _span(cidr))
        )
        if same_family or mapped_form:
            return True
    return not oracle_refused(ip)


def mapped(v4: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(MAPPED[0] | int(v4))


def nat64(v4: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(NAT64[0] | int(v4))


# -- vectors --------------------------------------------------------------------

REFUSED = words(
    """
0.0.0.0 0.255.255.255 10.0.0.0 10.255.255.255 100.64.0.0 100.127.255.255
127.0.0.0 127.0.0.1 127.255.255.255 169.254.0.0 169.254.169.254 169.254.255.255
172.16.0.0 172.31.255.255 192.0.0.0 192.0.0.255 192.0.2.0 192.0.2.255
192.31.196.0 192.31.196.255 192.52.193.0 192.52.193.255 192.88.99.0 192.88.99.255
192.168.0.0 192.168.255.255 192.175.48.0 192.175.48.255 198.18.0.0 198.19.255.255
198.51.100.0 198.51.100.255 203.0.113.0 203.0.113.255 224.0.0.0 239.255.255.255
240.0.0.0 255.255.255.255
1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 4000:: ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
2001:: 2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff 2001:0:4136:e378:8000:63bf:3fff:fdd2
2001:db8:: 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff
2002:: 2002:7f00:1:: 2002:808:808:: 2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff
2620:4f:8000:: 2620:4f:8000:ffff:ffff:ffff:ffff:ffff 3fff:: 3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff
:: ::1 ::127.0.0.1 ::ffff:0:127.0.0.1 ::ffff:0:8.8.8.8 64:ff9b:1::1 100::1 5f00::1
fc00::1 fd00:ec2::254 fe80::1 fe80::1%eth0 febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff
fec0::1 ff02::1
::ffff:127.0.0.1 ::ffff:0.0.0.0 ::ffff:169.254.169.254 ::ffff:10.0.0.1 ::ffff:255.255.255.255
64:ff9b::127.0.0.1 64:ff9b::a9fe:a9fe 64:ff9b::192.168.1.1
"""
)

PERMITTED = words(
    """
1.0.0.0 1.1.1.1 8.8.8.8 9.255.255.255 11.0.0.0 100.63.255.255 100.128.0.0
126.255.255.255 128.0.0.0 169.253.255.255 169.255.0.0 172.15.255.255 172.32.0.0
191.255.255.255 192.0.1.0 192.0.1.255 192.0.3.0 192.31.195.255 192.31.197.0
192.52.192.255 192.52.194.0 192.88.98.255 192.88.100.0 192.167.255.255
192.169.0.0 192.175.47.255 192.175.49.0 198.17.255.255 198.20.0.0 198.51.99.255
198.51.101.0 203.0.112.255 203.0.114.0 223.255.255.255
2000:: 2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff 2001:200:: 2001:db7:ffff:ffff:ffff:ffff:ffff:ffff
2001:db9:: 2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff 2003:: 2606:4700::1111
2620:4f:7fff:ffff:ffff:ffff:ffff:ffff 2620:4f:8001:: 3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff
3fff:1000:: 3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
::ffff:8.8.8.8 ::ffff:1.1.1.1 64:ff9b::8.8.8.8 64:ff9b::101:101
"""
)


@pytest.mark.parametrize("text", REFUSED)
def test_refused_vectors(text: str) -> None:
    ip = ipaddress.ip_address(text)
    reason = AddressPolicy().refusal(ip)
    assert reason is not None
    assert not AddressPolicy().permits(ip)
    assert oracle_refused(ip)


@pytest.mark.parametrize("text", PERMITTED)
def test_permitted_vectors(text: str) -> None:
    ip = ipaddress.ip_address(text)
    assert AddressPolicy().refusal(ip) is None
    assert AddressPolicy().permits(ip)
    assert not oracle_refused(ip)


def test_reasons_name_the_address_and_the_range() -> None:
    policy = AddressPolicy()
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == (
        "127.0.0.2 is in 127.0.0.0/8 (loopback)"
    )
    metadata = policy.refusal(ipaddress.ip_address("169.254.169.254"))
    assert metadata is not None and "169.254.0.0/16" in metadata and "metadata" in metadata
    mapped_reason = policy.refusal(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert mapped_reason == "::ffff:10.1.2.3 embeds 10.1.2.3, which is in 10.0.0.0/8 (private-use)"
    nat_reason = policy.refusal(ipaddress.ip_address("64:ff9b::127.0.0.1"))
    assert nat_reason is not None and nat_reason.startswith("64:ff9b::127.0.0.1 embeds 127.0.0.1")
    link_local = policy.refusal(ipaddress.ip_address("fe80::1"))
    assert link_local is not None and "fe80::/10 (link-local)" in link_local
    assert "outside 2000::/3" in str(policy.refusal(ipaddress.ip_address("4000::1")))
    assert "6to4" in str(policy.refusal(ipaddress.ip_address("2002:808:808::")))


@pytest.mark.parametrize("cidr", V6_OUTSIDE_EXAMPLES)
def test_the_last_address_of_a_labelled_ipv6_range_is_named_by_it(cidr: str) -> None:
    last = ipaddress.ip_network(cidr).broadcast_address
    assert f"is in {cidr} (" in str(AddressPolicy().refusal(last))


# What the resolver hands back for the odd numeric hosts httpx passes through
# unchanged: inet_aton semantics, and getaddrinfo's numeric-host path (local).
NUMERIC_NAMES = ["2130706433", "0x7f.1", "127.1", "0", "017700000001", "0x7f000001", "127.0.1"]


@pytest.mark.parametrize("name", NUMERIC_NAMES)
def test_numeric_host_forms_resolve_to_refused_addresses(name: str) -> None:
    policy = AddressPolicy()
    via_aton = ipaddress.IPv4Address(socket.inet_aton(name))
    assert policy.refusal(via_aton) is not None
    infos = socket.getaddrinfo(
        name, 80, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
    )
    for *_, sockaddr in infos:
        assert policy.refusal(ipaddress.ip_address(sockaddr[0])) is not None


def test_allowlist_overrides_refusals() -> None:
    policy = AddressPolicy(["127.0.0.1/32"])
    assert policy.permits(ipaddress.ip_address("127.0.0.1"))
    assert not policy.permits(ipaddress.ip_address("127.0.0.2"))
    # An IPv4 network admits the mapped form, not the NAT64 form.
    assert policy.permits(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.permits(ipaddress.ip_address("::ffff:127.0.0.2"))
    assert not policy.permits(ipaddress.ip_address("64:ff9b::127.0.0.1"))

    v6 = AddressPolicy(["fc00::/7", "::1", "64:ff9b::/96"])
    assert v6.permits(ipaddress.ip_address("fd00:ec2::254"))
    assert v6.permits(ipaddress.ip_address("::1"))
    assert v6.permits(ipaddress.ip_address("64:ff9b::10.0.0.1"))
    assert not v6.permits(ipaddress.ip_address("fe80::1"))
    assert not v6.permits(ipaddress.ip_address("127.0.0.1"))

    assert AddressPolicy(["0.0.0.0/0"]).permits(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert AddressPolicy(["2002::/16"]).permits(ipaddress.ip_address("2002:7f00:1::"))


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "nope", "300.0.0.0/8", "", "10.0.0.0/33", "::1/129"])
def test_bad_cidr_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        AddressPolicy([bad])


# -- properties -------------------------------------------------------------------

ipv4s = st.ip_addresses(v=4)
listed_v4 = st.sampled_from(V4_TABLE).flatmap(lambda c: st.ip_addresses(network=c))
listed_v6 = st.sampled_from(V6_REFUSED_INSIDE + V6_OUTSIDE_EXAMPLES).flatmap(
    lambda c: st.ip_addresses(network=c)
)
outside_global = st.one_of(
    st.integers(0, GLOBAL_UNICAST[0] - 1), st.integers(GLOBAL_UNICAST[1] + 1, 2**128 - 1)
).map(ipaddress.IPv6Address)
any_ip = st.one_of(ipv4s, st.ip_addresses(v=6), listed_v4, listed_v6, outside_global)


@settings(max_examples=300, deadline=None)
@given(ip=any_ip)
def test_policy_agrees_with_the_oracle(ip: IPAddress) -> None:
    assert AddressPolicy().permits(ip) == (not oracle_refused(ip))


@settings(max_examples=200, deadline=None)
@given(ip=listed_v4)
def test_every_listed_ipv4_is_refused(ip: ipaddress.IPv4Address) -> None:
    assert AddressPolicy().refusal(ip) is not None


@settings(max_examples=200, deadline=None)
@given(ip=outside_global)
def test_ipv6_outside_global_unicast_is_refused_unless_it_embeds_a_public_ipv4(
    ip: ipaddress.IPv6Address,
) -> None:
    embeds = _within(int(ip), MAPPED) or _within(int(ip), NAT64)
    if not embeds:
        assert AddressPolicy().refusal(ip) is not None


@settings(max_examples=200, deadline=None)
@given(v4=st.one_of(ipv4s, listed_v4))
def test_embedded_forms_agree_with_their_ipv4(v4: ipaddress.IPv4Address) -> None:
    policy = AddressPolicy()
    expected = policy.permits(v4)
    assert policy.permits(mapped(v4)) == expected
    assert policy.permits(nat64(v4)) == expected
    reason = policy.refusal(mapped(v4))
    if reason is not None:
        assert str(v4) in reason


networks = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
).map(lambda t: str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False)))


@settings(max_examples=200, deadline=None)
@given(allow=st.lists(networks, max_size=3), ip=any_ip)
def test_allowlist_agrees_with_the_oracle(allow: list[str], ip: IPAddress) -> None:
    assert AddressPolicy(allow).permits(ip) == oracle_permits(ip, allow)


@settings(max_examples=200, deadline=None)
@given(allow=st.lists(networks, min_size=1, max_size=3), data=st.data())
def test_allowed_addresses_are_always_permitted(allow: list[str], data: st.DataObject) -> None:
    cidr = data.draw(st.sampled_from(allow))
    ip = data.draw(st.ip_addresses(network=cidr))
    policy = AddressPolicy(allow)
    assert policy.permits(ip)
    if ip.version == 4:
        assert policy.permits(mapped(ip))
