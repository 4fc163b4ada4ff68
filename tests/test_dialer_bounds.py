"""How many sockets one run's connect may hold: a bound, whatever its DNS answers.

The dialer races a name's allowed answers a quarter second apart (RFC 8305)
and keeps every attempt going until one connects. A job's owner controls
its DNS: a name with a thousand answers that all drop SYNs made one run
start a connect every 250 ms for its whole timeout, 1,200 sockets in
5 minutes; 56 such runs (one account's share of 64 workers) pass the 8,192
descriptors the systemd unit allows, and every other account's runs in
that process, and the API when the daemon performs requests itself, fail
for want of a descriptor. No traffic here: `_connect` is replaced by one
that never connects and counts, on trio's autojump clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
import trio

from jobsd import dialer
from jobsd.address_policy import AddressPolicy, IPAddress
from jobsd.dialer import MAX_PER_FAMILY, ConnectFailed, PolicyDialer

ANSWERS = [ipaddress.ip_address(f"127.0.{i // 250}.{1 + i % 250}") for i in range(1000)]
# IPv6 answers first, as getaddrinfo orders them on a host that has a route for it.
MIXED = [ipaddress.ip_address(f"fd00::{i + 1:x}") for i in range(20)] + ANSWERS[:20]
POLICY = AddressPolicy(["127.0.0.0/8", "fd00::/64"])


class Silent:
    """Connect attempts that never complete, as to hosts that drop every SYN."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.tried: list[IPAddress] = []

    async def connect(self, ip: IPAddress, port: int) -> trio.SocketStream:
        self.tried.append(ip)
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            await trio.sleep_forever()
        finally:
            self.open -= 1
        raise AssertionError("unreachable")


async def _resolve(host: str, port: int) -> Sequence[IPAddress]:
    return MIXED if host == "mixed.test" else ANSWERS


async def test_one_connect_holds_a_bounded_number_of_sockets(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    silent = Silent()
    monkeypatch.setattr(dialer, "_connect", silent.connect)
    policy = PolicyDialer(POLICY, _resolve)
    with trio.move_on_after(300):  # a run with a 5-minute timeout
        await policy.open_tcp("many.test", 80)
    assert silent.open == 0
    assert silent.most <= MAX_PER_FAMILY, silent.most
    assert silent.tried == ANSWERS[:MAX_PER_FAMILY]  # the first answers, in their order


async def test_the_bounded_race_still_fails_over_and_says_what_it_left_out(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Answers that refuse at once are each tried in turn up to the bound; the
    error names the ones tried and how many were not, not a thousand addresses."""
    tried: list[IPAddress] = []

    async def refused(ip: IPAddress, port: int) -> trio.SocketStream:
        tried.append(ip)
        await trio.sleep(0)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(dialer, "_connect", refused)
    policy = PolicyDialer(POLICY, _resolve)
    with pytest.raises(ConnectFailed) as info:
        await policy.open_tcp("many.test", 80)
    assert tried == ANSWERS[:MAX_PER_FAMILY]
    message = str(info.value)
    assert message.count("Connection refused") == MAX_PER_FAMILY
    assert f"{len(ANSWERS) - MAX_PER_FAMILY} more addresses not tried" in message
    assert len(message) < 100 * MAX_PER_FAMILY


async def test_a_long_list_of_one_family_does_not_crowd_out_the_other(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    silent = Silent()
    monkeypatch.setattr(dialer, "_connect", silent.connect)
    with trio.move_on_after(300):
        await PolicyDialer(POLICY, _resolve).open_tcp("mixed.test", 80)
    assert silent.tried == MIXED[:MAX_PER_FAMILY] + MIXED[20 : 20 + MAX_PER_FAMILY]
    assert silent.most == 2 * MAX_PER_FAMILY


async def test_an_address_answered_twice_is_tried_once(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Repeated answers do not take the places of others in the bound, nor cost an
    attempt each."""
    tried: list[IPAddress] = []

    async def refused(ip: IPAddress, port: int) -> trio.SocketStream:
        tried.append(ip)
        await trio.sleep(0)
        raise ConnectionRefusedError(111, "Connection refused")

    async def repeats(host: str, port: int) -> Sequence[IPAddress]:
        return [ANSWERS[0]] * (2 * MAX_PER_FAMILY) + [ANSWERS[1]]

    monkeypatch.setattr(dialer, "_connect", refused)
    with pytest.raises(ConnectFailed) as info:
        await PolicyDialer(POLICY, repeats).open_tcp("repeats.test", 80)
    assert tried == [ANSWERS[0], ANSWERS[1]]
    assert "not tried" not in str(info.value)


async def test_a_second_connection_made_in_the_winners_step_is_closed(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """Two attempts that connect at the same moment: the first wins, the other's
    socket is closed, not left open for good."""
    made: list[trio.SocketStream] = []
    connected = trio.Event()  # both sockets become writable at once

    async def at_the_same_moment(ip: IPAddress, port: int) -> trio.SocketStream:
        await connected.wait()
        ours, theirs = trio.socket.socketpair()
        theirs.close()
        made.append(trio.SocketStream(ours))
        return made[-1]

    async def two(host: str, port: int) -> Sequence[IPAddress]:
        return ANSWERS[:2]

    async def connect_both_at(delay_s: float) -> None:
        await trio.sleep(delay_s)  # after the second attempt started (0.25 s)
        connected.set()

    monkeypatch.setattr(dialer, "_connect", at_the_same_moment)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect_both_at, 0.3)
        stream = await PolicyDialer(POLICY, two).open_tcp("two.test", 80)
    assert len(made) == 2 and stream is made[0]
    assert made[1].socket.fileno() == -1  # closed
    await stream.aclose()
