"""`l2mesh netcheck`'s sans-IO part against a real ControllerCore and RootCore in memory, behind a fake NAT
that maps per source (cone) or per destination (symmetric)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from l2mesh.identity import Identity
from l2mesh.netcheck import PROBES_PER_SERVER, Netcheck, Server, mapping_verdict
from l2mesh.root.core import RootCore
from l2mesh.wire.common import Endpoint
from l2mesh.wire.packets import IdentityResponse
from tests.unit.harness import Controller, FakeClock
from tests.unit.recording import RecordingTransmit

CONTROLLER_AT: Endpoint = ("198.18.0.1", 9994)
ROOT_AT: Endpoint = ("198.18.0.5", 9993)
PUBLIC_IP = "198.18.7.2"

Nat = Callable[[Endpoint], Endpoint]  # the address a server sees our socket at, by server


def cone(server: Endpoint) -> Endpoint:
    return (PUBLIC_IP, 40000)


def symmetric(server: Endpoint) -> Endpoint:
    return (PUBLIC_IP, 40000 + server[1] % 100)


class Reflectors:
    """A controller and a root in memory, each answering after its own one-way delay."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.root_identity = Identity.generate()
        self.root_transmit = RecordingTransmit()
        self.root = RootCore(self.root_identity, self.root_transmit, 5000)
        self.one_way_s = {CONTROLLER_AT: 0.004, ROOT_AT: 0.010}
        self.silent: set[Endpoint] = set()  # nothing listens there

    def deliver(self, data: bytes, server: Endpoint, seen_from: Endpoint, now: float) -> list[bytes]:
        """A datagram to one server; what it sends back to seen_from."""
        if server in self.silent:
            return []
        if server == CONTROLLER_AT:
            self.controller.receive(data, seen_from, now)
            transmit = self.controller.transmit
        else:
            self.root.datagram_received(memoryview(data), seen_from, now, False)
            transmit = self.root_transmit
        answers = [d for d, address in transmit.datagrams if address == seen_from]
        transmit.datagrams = []
        return answers


def run(check: Netcheck, reflectors: Reflectors, nat: Nat, lost: Callable[[bytes], bool] = lambda d: False,
        seconds: float = 3.0) -> None:
    """Drive netcheck as its edge does: ticks every 10 ms, answers arriving after a round trip."""
    now = 0.0
    in_flight: list[tuple[float, bytes, Endpoint]] = []

    def send(outgoing: list[tuple[bytes, Endpoint]], at: float) -> None:
        for data, server in outgoing:
            if lost(data):
                continue
            delay = reflectors.one_way_s[server]
            for answer in reflectors.deliver(data, server, nat(server), at + delay):
                in_flight.append((at + 2 * delay, answer, server))

    while now < seconds and not check.done:
        send(check.tick(now), now)
        for due in sorted(in_flight, key=lambda item: item[0]):
            if due[0] <= now + 0.01:
                in_flight.remove(due)
                send(check.datagram(due[1], due[2], due[0]), due[0])
        now += 0.01


@pytest.fixture
def reflectors(storage_url: str) -> Iterator[Reflectors]:
    controller = Controller(storage_url, FakeClock(), endpoint=CONTROLLER_AT)
    yield Reflectors(controller)
    controller.close()


def servers(reflectors: Reflectors) -> list[Server]:
    return [Server("controller", CONTROLLER_AT, expected_id=reflectors.controller.node_id), Server("root", ROOT_AT)]


def test_behind_a_cone_nat_both_servers_see_one_endpoint_and_the_nat_is_not_symmetric(reflectors: Reflectors) -> None:
    check = Netcheck(servers(reflectors))
    run(check, reflectors, cone)
    report = check.report()
    assert report["endpoints"] == [f"{PUBLIC_IP}:40000"]
    assert report["symmetric"] is False
    assert report["latency_ms"] == {"198.18.0.1:9994": pytest.approx(8.0, abs=1.0), "198.18.0.5:9993": pytest.approx(20.0, abs=1.0)}
    assert all(s["error"] is None and s["observed"] == f"{PUBLIC_IP}:40000" for s in report["servers"])
    assert all(len(s.rtts_ms) == PROBES_PER_SERVER for s in check.servers)


def test_behind_a_symmetric_nat_each_server_sees_another_port(reflectors: Reflectors) -> None:
    check = Netcheck(servers(reflectors))
    run(check, reflectors, symmetric)
    report = check.report()
    assert report["symmetric"] is True
    assert sorted(report["endpoints"]) == [f"{PUBLIC_IP}:40093", f"{PUBLIC_IP}:40094"]


def test_one_server_answering_leaves_the_question_open_and_says_why(reflectors: Reflectors) -> None:
    dead = Server("root", ("198.18.0.9", 9993))
    reflectors.one_way_s[dead.endpoint] = 0.001
    check = Netcheck([Server("controller", CONTROLLER_AT, expected_id=reflectors.controller.node_id), dead])
    reflectors.silent.add(dead.endpoint)
    run(check, reflectors, cone, seconds=1.0)
    report = check.report()
    assert report["symmetric"] is None and "takes two" in report["reason"]
    assert report["endpoints"] == [f"{PUBLIC_IP}:40000"]
    assert [s["error"] for s in report["servers"]] == [None, "no answer"]


def test_lost_packets_are_sent_again(reflectors: Reflectors) -> None:
    dropped: list[int] = []

    def lose_first_two(data: bytes) -> bool:
        if len(dropped) < 2:
            dropped.append(data[0])
            return True
        return False

    check = Netcheck(servers(reflectors))
    run(check, reflectors, cone, lost=lose_first_two)
    assert check.done and check.report()["symmetric"] is False


def test_a_server_whose_keys_are_not_its_ids_is_reported_and_not_trusted(reflectors: Reflectors) -> None:
    check = Netcheck(servers(reflectors))
    check.tick(0.0)
    someone_else = reflectors.root_identity.public
    forged = IdentityResponse.build({"x25519": someone_else.x25519_public, "ed25519": someone_else.ed25519_public})
    assert check.datagram(forged, CONTROLLER_AT, 0.001) == []
    controller = check.report()["servers"][0]
    assert controller["observed"] is None and "are not" in controller["error"]
    assert check.servers[0].identity is None


def test_datagrams_from_strangers_and_garbage_are_counted_not_raised(reflectors: Reflectors) -> None:
    check = Netcheck(servers(reflectors))
    assert check.datagram(b"\x03" + bytes(40), ("203.0.113.1", 1), 0.0) == []
    assert check.datagram(b"\x03" + bytes(40), CONTROLLER_AT, 0.0) == []
    assert check.datagram(b"\x07garbage", ROOT_AT, 0.0) == []
    assert check.datagram(b"", ROOT_AT, 0.0) == []
    assert check.drops["from_stranger"] == 2 and check.drops["rejected"] >= 2


def test_the_verdict_needs_two_answers() -> None:
    assert mapping_verdict([])[0] is None
    assert mapping_verdict([("198.18.7.2", 1)])[0] is None
    assert mapping_verdict([("198.18.7.2", 1), ("198.18.7.2", 1)])[0] is False
    assert mapping_verdict([("198.18.7.2", 1), ("198.18.7.3", 1)])[0] is True
