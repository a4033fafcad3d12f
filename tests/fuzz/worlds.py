"""Live sans-IO worlds for the stateful targets: cores with established sessions, built by the unit-test harnesses.

A mutated packet from nobody stops at the AEAD check. To reach what lies
behind it (message parsing, membership, paths, the switch, the controller's
and the root's handlers), the fuzzer seals mutated plaintext with the real
keys of a live session, as a buggy or hostile peer that holds them would.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from l2mesh.session import Session
from tests.fuzz.corpus import RULE_TEXTS, Names
from tests.unit.harness import Controller, Member, World
from tests.unit.root_world import RootNode, RootWorld

SETTLE_S = 10.0


@dataclass
class MeshWorld:
    """A controller and two members, A and B, authorized on one network with flow rules, B talking to A directly.

    B is a bridge member: frames from it may carry any source MAC (learned
    by A's switch) and its topology changes are taken, so more of the
    switch is behind a mutated frame than behind a plain member's.
    """

    world: World
    controller: Controller
    network_id: int
    a: Member
    b: Member
    directory: tempfile.TemporaryDirectory[str]

    @classmethod
    def build(cls) -> "MeshWorld":
        directory = tempfile.TemporaryDirectory(prefix="l2mesh-fuzz-")
        world = World()
        controller = world.add_controller(f"sqlite://{Path(directory.name) / 'controller.db'}")
        network_id = controller.create_network()
        a, b = world.add_member(), world.add_member()
        for member, ip in ((a, "10.147.17.1"), (b, "10.147.17.2")):
            member.join(network_id, controller)
            controller.authorize(network_id, member, ip=ip, bridge=member is b)
        world.run(SETTLE_S, until=lambda: a.status() == "OK" and b.status() == "OK")
        controller.set_rules(network_id, RULE_TEXTS[0])
        b.send(b.frame_to(a))
        world.run(SETTLE_S, until=lambda: b.path_to(a) == "direct" and a.path_to(b) == "direct")
        world.run(1.0)
        return cls(world, controller, network_id, a, b, directory)

    def close(self) -> None:
        self.world.close()
        self.directory.cleanup()

    @property
    def now(self) -> float:
        return self.world.now

    def names(self) -> Names:
        """B sending to A, by the addresses the controller gave them."""
        return Names(self.network_id, self.b.node_id, self.a.node_id,
                     sender_ip=self.b.ips()[0].split("/")[0], receiver_ip=self.a.ips()[0].split("/")[0],
                     sender_endpoint=self.b.endpoint)

    def session_b_to_a(self) -> Session:
        session = self.b.core.peers[self.a.node_id].session
        assert session is not None and session.established
        return session

    def session_controller_to(self, member: Member) -> Session:
        session = self.controller.core.clients.by_node[member.node_id].session
        assert session.established
        return session

    def session_to_controller(self, member: Member) -> Session:
        session = member.core.peers[self.controller.node_id].session
        assert session is not None and session.established
        return session

    def forget_output(self) -> None:
        """What the cores sent and wrote is not delivered: the fuzz input is the only traffic."""
        for party in self.world.parties():
            party.transmit.datagrams.clear()
            party.transmit.frames.clear()
            party.transmit.segmented.clear()


@dataclass
class RootFuzzWorld:
    """A root with two registered nodes; the first sends the fuzz input."""

    root: RootWorld
    sender: RootNode
    other: RootNode

    @classmethod
    def build(cls) -> "RootFuzzWorld":
        root = RootWorld()
        return cls(root, root.node(1, local_endpoints=[("192.168.1.2", 9993)]), root.node(2))


def outcome(before: Mapping[str, int], after: Mapping[str, int], accepted: str = "accepted") -> str:
    """The drop counters an input raised, as one label ('accepted' when it raised none)."""
    raised = sorted(key for key, count in after.items() if count > before.get(key, 0))
    return "+".join(raised) if raised else accepted


def snapshot(*counters: Mapping[str, int]) -> Counter[str]:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    return total
