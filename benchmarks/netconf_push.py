"""How long the controller core takes to push one admin change to N online members (a quick measurement).

Not part of `make test` or `make bench`. Sans-IO: one ControllerCore with an
in-memory directory of N authorized members, each with a real Noise session
(the controller greets it, a member-side SessionTable answers) and
identified for the network. Every member is taken to hold the current
revision (as if it had its full config), then one member's addresses
change (a new revision, pushed): the time of that push is what is printed,
with the datagrams and bytes it sent.

Runs against whichever l2mesh is on PYTHONPATH, so the same script times
the code before netconf deltas (full configs per member) and after:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/netconf_push.py --members 10000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/netconf_push.py --members 10000 --online 100

With --online K < N, only K of the N members are online (a full-config
push costs per online member roughly the same whatever K is, so the time
for all N is about N/K times the one printed).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import replace

from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.controller.model import Member, Network
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.session import SessionTable

WALL_S = 1_900_000_000.0


class CountingTransmit:
    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0

    def send_datagram(self, data: bytes | memoryview, address: tuple[str, int]) -> None:
        self.datagrams += 1
        self.bytes += len(data)

    def send_segments(self, data: bytes | memoryview, segment_bytes: int, address: tuple[str, int]) -> None:
        self.send_datagram(data, address)


def endpoint_of(index: int) -> tuple[str, int]:
    return (f"198.18.{index // 250}.{index % 250 + 2}", 9993)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--online", type=int, default=None, help="how many of them are online (default: all)")
    args = parser.parse_args()
    online = args.members if args.online is None else min(args.online, args.members)

    controller = Identity.generate()
    transmit = CountingTransmit()
    core = ControllerCore(controller, Directory(), transmit, wall_clock_s=lambda: WALL_S)
    network = Network(make_network_id(controller.node_id, 1), "scale", revision=1)
    identities = [Identity.generate() for _ in range(args.members)]
    members = [
        Member(network.network_id, i.node_id, i.public, authorized=True,
               ips=(f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}/8",),
               endpoint="{}:{}".format(*endpoint_of(n)))
        for n, i in enumerate(identities)
    ]
    core.directory.apply(Committed(networks=(network,), members=tuple(members)))

    started = time.perf_counter()
    now = 1.0
    for n, identity in enumerate(identities[:online]):
        initiation = core.clients.greeting(identity.public, now)
        assert initiation is not None
        answer = SessionTable(identity.x25519_private).handle_initiation(initiation, now, "controller").response
        assert answer is not None
        core.datagram_received(memoryview(answer), endpoint_of(n), now)
        client = core.clients.by_static[identity.x25519_public]
        core.clients.identify(client, identity.node_id, identity.public, network.network_id)
    history = getattr(getattr(core.issuer, "history", None), "current", None)
    if history is not None:  # with deltas: every member holds revision 1, as if it had its full config
        core.issuer.history.current(network, lambda: core.issuer.build_config(network, members, 0, core.clients.by_node))
        for identity in identities[:online]:
            core.issuer.history.note_held(network.network_id, identity.node_id, network.revision)
    setup_s = time.perf_counter() - started

    changed = replace(members[0], ips=("10.255.255.254/8",))
    transmit.datagrams = transmit.bytes = 0
    sent_before = Counter(core.sent)
    started = time.perf_counter()
    core._now_s = now
    core.committed(Committed(networks=(replace(network, revision=2),), members=(changed,), push=(network.network_id,)))
    push_s = time.perf_counter() - started
    sent = Counter(core.sent) - sent_before
    print(
        f"members {args.members}, online {online}: push {push_s:.3f} s "
        f"({push_s / online * 1e6:.0f} us per online member), {transmit.datagrams} datagrams, "
        f"{transmit.bytes / 1e6:.1f} MB, sent {dict(sent)}, drops {dict(core.drops)} (setup {setup_s:.1f} s)"
    )


if __name__ == "__main__":
    main()
