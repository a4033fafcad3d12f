"""The one place where unit tests wire sans-IO cores together: a fake clock, an in-memory network
with drop, NAT and latency rules, members (a NodeCore each) and a controller (a ControllerCore on
SQLite).

Tests talk to these wrappers, not to the cores' insides, so when a core is refactored (the node
core was split into parts; the controller's admin changes may move to an object of their own and
its storage writes may become asynchronous) this file is the one to adapt: the Controller's admin
methods return once a change is committed and pushed, whatever that takes. Time is a float the
harness advances; every core ticks every TICK_S of it, as the reactor does.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from l2mesh.controller import admin
from l2mesh.controller.changes import Committed
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.directory import Directory
from l2mesh.edge.controller.storage_url import storage_from_url
from l2mesh.identity import Identity
from l2mesh.ids import member_mac
from l2mesh.netconf import NetworkConfig
from l2mesh.node.core import NodeCore
# The node's timing promises, imported here so that tests need not know which module keeps them.
from l2mesh.node.membership import NETCONF_ANSWER_TIMEOUT_S, NETCONF_REFRESH_S  # noqa: F401
from l2mesh.node.paths import DIRECT_DEAD_AFTER_S, DIRECT_RETRY_S, RELAY_AFTER_S  # noqa: F401
from tests.unit.recording import RecordingTransmit

Endpoint = tuple[str, int]
TICK_S = 0.1  # the reactor's tick interval
WALL_EPOCH_S = 1_700_000_000.0  # wall clock at fake time 0 (configs carry wall-clock expiry)
CONTROLLER_ENDPOINT: Endpoint = ("198.18.0.1", 9994)
TEST_ETHERTYPE = b"\x88\xb5"  # IEEE local experimental: a frame no switch rule looks into


class FakeClock:
    """Fake monotonic time (`now`) and a wall clock that moves with it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def wall(self) -> float:
        return WALL_EPOCH_S + self.now


class Party(Protocol):
    """Anything on the fake network: it has an address, records what it sends, and takes datagrams."""

    endpoint: Endpoint
    transmit: RecordingTransmit

    def receive(self, data: bytes, source: Endpoint, now: float) -> None: ...

    def tick(self, now: float) -> None: ...


@dataclass(eq=False)
class Sent:
    """One datagram on the fake network."""

    sender: Any  # the Party that sent it
    data: bytes
    address: Endpoint  # where it was sent
    source: Endpoint  # where it appears to come from
    sent_s: float = 0.0
    due_s: float = 0.0
    generation: int = 0  # 0: sent outside a receive; n+1: sent while receiving one of generation n

    @property
    def kind(self) -> int:
        return self.data[0]


Rule = Callable[[Sent], bool]  # True: the datagram is lost
Latency = Callable[[Sent], float]  # one-way delay in seconds


class FakeNetwork:
    """Moves datagrams between parties by address, in send order, through drop rules and delays.

    A party may own several addresses; it answers from the address a remote last reached it at
    (as a NAT mapping or a socket using IP_PKTINFO does), else from its main endpoint.
    """

    def __init__(self) -> None:
        self.parties: dict[Endpoint, Party] = {}
        self.rules: list[Rule] = []
        self.latency: Latency | None = None
        self.log: list[Sent] = []  # everything sent, in send order
        self.lost: list[Sent] = []
        self._queue: list[tuple[float, int, Sent]] = []
        self._order = itertools.count()
        self._reached_at: dict[tuple[Any, Endpoint], Endpoint] = {}

    def attach(self, party: Party, *addresses: Endpoint) -> None:
        for address in addresses or (party.endpoint,):
            self.parties[address] = party

    def replace(self, old: Party, new: Party) -> None:
        """A restarted party takes over every address of the old one."""
        for address, party in list(self.parties.items()):
            if party is old:
                self.parties[address] = new

    def detach(self, party: Party) -> None:
        for address in [a for a, p in self.parties.items() if p is party]:
            del self.parties[address]

    def next_due_s(self) -> float:
        return self._queue[0][0] if self._queue else math.inf

    def collect(self, party: Party, now: float, generation: int = 0) -> None:
        """Take what party sent (since last collected) onto the wire."""
        outgoing = party.transmit.datagrams
        if not outgoing:
            return
        party.transmit.datagrams = []
        for data, address in outgoing:
            source = self._reached_at.get((party, address), party.endpoint)
            sent = Sent(party, data, address, source, now, now, generation)
            if self.latency is not None:
                sent.due_s = now + self.latency(sent)
            self.log.append(sent)
            heapq.heappush(self._queue, (sent.due_s, next(self._order), sent))

    def deliver(self, now: float, drop: Rule | None = None, max_rounds: int = 50) -> list[Sent]:
        """Deliver every datagram due by `now`, and what they cause, until nothing more is due."""
        for party in list(dict.fromkeys(self.parties.values())):
            self.collect(party, now)
        delivered: list[Sent] = []
        while self._queue and self._queue[0][0] <= now:
            _, _, sent = heapq.heappop(self._queue)
            if sent.generation > max_rounds:
                raise AssertionError(f"network still busy after {max_rounds} rounds")
            target = self.parties.get(sent.address)
            # Every rule sees every datagram: a NAT rule learns from what passes it even if another drops it.
            verdicts = [rule(sent) for rule in self.rules]
            if drop is not None:
                verdicts.append(drop(sent))
            if target is None or any(verdicts):
                self.lost.append(sent)
                continue
            delivered.append(sent)
            self._reached_at[(target, sent.source)] = sent.address
            target.receive(sent.data, sent.source, sent.due_s)
            self.collect(target, sent.due_s, sent.generation + 1)
        return delivered


# -- network rules ---------------------------------------------------------------------------------------


def cut_between(a: Endpoint, b: Endpoint) -> Rule:
    """Everything between two addresses is lost, both ways (a firewall, a broken route)."""
    pair = {a, b}

    def rule(sent: Sent) -> bool:
        return {sent.source, sent.address} == pair

    return rule


class NatFilter:
    """Address-restricted NAT filtering for the parties at `inside`: a datagram from outside reaches
    an inside address only after that address sent one to its source (so two such members reach
    each other only once both have sent, which is what hole punching arranges)."""

    def __init__(self, *inside: Endpoint) -> None:
        self.inside = set(inside)
        self.opened: set[tuple[Endpoint, Endpoint]] = set()
        self.refused: list[Sent] = []

    def __call__(self, sent: Sent) -> bool:
        if sent.source in self.inside:
            self.opened.add((sent.source, sent.address))
        if sent.address in self.inside and (sent.address, sent.source) not in self.opened:
            self.refused.append(sent)
            return True
        return False


def drop_first(count: int, kind: int) -> Rule:
    """Lose the first `count` datagrams of one packet type."""
    dropped: list[Sent] = []

    def rule(sent: Sent) -> bool:
        if sent.kind == kind and len(dropped) < count:
            dropped.append(sent)
            return True
        return False

    return rule


# -- members ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Member:
    """One node: its identity, its address on the fake network, what it sent and wrote, its NodeCore.

    `network_id` is the network mac() and frames() mean when not told otherwise.
    """

    number: int
    identity: Identity = field(default_factory=Identity.generate)
    endpoint: Endpoint = None  # type: ignore[assignment]  # default 198.18.<number>.2:9993
    transmit: RecordingTransmit = field(default_factory=RecordingTransmit)
    core: NodeCore = None  # type: ignore[assignment]
    clock: FakeClock = field(default_factory=FakeClock)
    network_id: int | None = None

    def __post_init__(self) -> None:
        if self.endpoint is None:
            self.endpoint = (f"198.18.{self.number}.2", 9993)
        if self.core is None:
            self.core = NodeCore(self.identity, self.transmit, wall_clock_s=self.clock.wall)

    def restarted(self) -> "Member":
        """The same identity, address and clock, with every bit of state lost."""
        return Member(self.number, self.identity, self.endpoint, clock=self.clock, network_id=self.network_id)

    @property
    def node_id(self) -> int:
        return self.identity.node_id

    # -- as a party on the fake network
    def receive(self, data: bytes, source: Endpoint, now: float) -> None:
        self.core.datagram_received(memoryview(data), source, now)

    def tick(self, now: float) -> None:
        self.core.tick(now)

    # -- the data plane
    def mac(self, network_id: int | None = None) -> bytes:
        return member_mac(self.node_id, self._net(network_id))

    def frames(self, network_id: int | None = None) -> list[bytes]:
        """Frames written to this member's TAP (on one network, if given)."""
        return [frame for nid, frame in self.transmit.frames if network_id is None or nid == network_id]

    def frame_to(self, other: "Member", payload: bytes = b"hello", network_id: int | None = None) -> bytes:
        """A unicast Ethernet frame from this member's MAC to other's."""
        return other.mac(network_id) + self.mac(network_id) + TEST_ETHERTYPE + payload

    def send(self, frame: bytes, network_id: int | None = None, now: float | None = None) -> None:
        """The frame as this member's TAP hands it to the daemon."""
        self.core.frame_from_tap(self._net(network_id), frame, self.clock.now if now is None else now)

    def _net(self, network_id: int | None) -> int:
        chosen = self.network_id if network_id is None else network_id
        assert chosen is not None, "which network?"
        return chosen

    # -- the control plane
    def join(self, network_id: int, controller: "Controller | Endpoint", now: float | None = None) -> None:
        endpoint = controller if isinstance(controller, tuple) else controller.endpoint
        if self.network_id is None:
            self.network_id = network_id
        self.core.join(network_id, endpoint, self.clock.now if now is None else now)

    def leave(self, network_id: int) -> None:
        self.core.leave(network_id)

    def status(self, network_id: int | None = None) -> str | None:
        """REQUESTING, ACCESS_DENIED, NOT_FOUND or OK; None when the network is not joined."""
        state = self.core.networks.get(self._net(network_id))
        return None if state is None else state.status.value

    def config(self, network_id: int | None = None) -> NetworkConfig | None:
        state = self.core.networks.get(self._net(network_id))
        return None if state is None else state.config

    def ips(self, network_id: int | None = None) -> tuple[str, ...]:
        """This member's managed addresses in its config, as CIDRs."""
        config = self.config(network_id)
        me = config.member(self.node_id) if config is not None else None
        return () if me is None else me.ips

    def listed(self, network_id: int | None = None) -> set[int]:
        """Node ids in this member's config for the network (itself included)."""
        config = self.config(network_id)
        return set() if config is None else {m.node_id for m in config.members}

    def peer_ids(self, with_controllers: bool = False) -> set[int]:
        """Nodes this member holds as peers, idle members included (controllers only if asked)."""
        table = self.core.peer_table
        active = {node_id for node_id, peer in table.by_id.items() if with_controllers or not peer.is_controller}
        return active | set(table.known)

    def path_to(self, other: "Member") -> str:
        """'direct', 'relay' or 'none' (no established session); 'none' also when other is no peer or idle."""
        peer = self.core.peers.get(other.node_id)
        return "none" if peer is None else peer.path

    def endpoint_of(self, other: "Member") -> Endpoint | None:
        """Where this member sends to other directly (an idle member: where traffic to it will go first)."""
        peer = self.core.peers.get(other.node_id)
        if peer is not None:
            return peer.endpoint
        member = self.core.peer_table.known.get(other.node_id)
        return None if member is None else member.first_endpoint

    def set_local_addresses(self, endpoints: list[Endpoint]) -> None:
        """What the daemon reads from its interfaces: announced to the controller as LAN candidates."""
        self.core.paths.local_endpoints = list(endpoints)

    @property
    def drops(self) -> dict[str, int]:
        """Every drop counter of the node (its core's and its reassembler's)."""
        return dict(self.core.drops + self.core.receive.reassembler.drops)

    def switch_counters(self, network_id: int | None = None) -> dict[str, dict[str, int]]:
        """The network switch's drop and forwarding counters."""
        return self.core.networks[self._net(network_id)].switch.counters()

    @property
    def held_fragment_bytes(self) -> int:
        """What the node holds of incomplete fragmented packets (grows when it keeps a fragment)."""
        return self.core.reassembler.pending_bytes


# -- the controller ----------------------------------------------------------------------------------------


class Controller:
    """A ControllerCore on a database (a --db URL), with the admin actions tests need.

    The storage writer is played synchronously: after every input, the
    writes the core asked for are committed in order and their results
    handed back, as the edge's writer thread does (one interleaving of it).
    """

    def __init__(self, storage_url: str, clock: FakeClock, identity: Identity | None = None,
                 endpoint: Endpoint = CONTROLLER_ENDPOINT) -> None:
        self.storage_url = storage_url
        self.clock = clock
        self.identity = identity or Identity.generate()
        self.endpoint = endpoint
        self.transmit = RecordingTransmit()
        self._open()

    def _open(self) -> None:
        self.storage = storage_from_url(self.storage_url)
        self.core = ControllerCore(self.identity, Directory.load(self.storage), self.transmit, wall_clock_s=self.clock.wall)

    def _write_back(self) -> list[Committed]:
        """Commit what the core wants written, in order, and tell it what was committed; the changes."""
        changes: list[Committed] = []
        while True:
            writes = self.core.take_writes()
            if not writes:
                return changes
            for write in writes:
                try:
                    change = write.commit(self.storage)
                except Exception:
                    change = write.failed()
                self.core.committed(change)
                changes.append(change)

    def _admin(self, change: Committed) -> Any:
        """An admin change, committed first (as the API's writer does), then applied and pushed."""
        answer = self.core.committed(change)
        self._write_back()
        return answer

    def restart(self) -> None:
        """A new process on the same database and identity: every session and client is gone."""
        self.storage.close()
        self._open()

    def greet_members(self) -> int:
        """What the process does right after start-up."""
        greeted = self.core.greet_members(self.clock.now)
        self._write_back()
        return greeted

    def close(self) -> None:
        self.storage.close()

    @property
    def node_id(self) -> int:
        return self.identity.node_id

    # -- as a party on the fake network
    def receive(self, data: bytes, source: Endpoint, now: float) -> None:
        self.core.datagram_received(memoryview(data), source, now)
        self._write_back()

    def tick(self, now: float) -> None:
        self.core.tick(now)
        self._write_back()

    def receive_segments(self, data: bytes, segment_bytes: int, source: Endpoint) -> bool:
        """A run of same-size datagrams from one sender, as UDP GRO hands them over; False: not taken whole."""
        taken = self.core.segments_received(memoryview(data), segment_bytes, source, self.clock.now)
        self._write_back()
        return taken

    # -- admin actions (what the HTTP API calls); each returns once the change is committed and pushed
    def create_network(self, name: str = "lab", pools: Iterable[str] = ("10.147.17.0/24",), private: bool = True,
                       **fields: Any) -> int:
        doc = self._admin(admin.create_network(self.storage, self.node_id, {"name": name, "pools": list(pools), "private": private, **fields}))
        return int(doc["id"], 16)

    def update_network(self, network_id: int, **fields: Any) -> dict[str, Any]:
        return self._admin(admin.update_network(self.storage, network_id, fields))  # type: ignore[no-any-return]

    def set_rules(self, network_id: int, text: str) -> dict[str, Any]:
        """Replace the network's flow rules (as PUT .../rules does); the rules view after the push."""
        self._admin(admin.set_rules(self.storage, network_id, {"rules": text}))
        return self.core.get_rules(network_id)

    def authorize(self, network_id: int, member: Member, ip: str | None = None, **fields: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {"authorized": True, **fields}
        if ip is not None:
            doc["ips"] = [ip]
        return self._update_member(network_id, member, doc)

    def _update_member(self, network_id: int, member: Member, doc: dict[str, Any]) -> dict[str, Any]:
        return self._admin(admin.update_member(self.storage, network_id, member.node_id, doc, self.clock.wall()))  # type: ignore[no-any-return]

    def deauthorize(self, network_id: int, member: Member) -> dict[str, Any]:
        return self._update_member(network_id, member, {"authorized": False})

    def set_ips(self, network_id: int, member: Member, *ips: str) -> dict[str, Any]:
        return self._update_member(network_id, member, {"ips": list(ips)})

    def delete_member(self, network_id: int, member: Member) -> None:
        self._admin(admin.delete_member(self.storage, network_id, member.node_id))

    def member(self, network_id: int, member: Member) -> dict[str, Any]:
        return self.core.get_member(network_id, member.node_id)

    def online_members(self) -> int:
        return int(self.core.status()["online_members"])

    @property
    def drops(self) -> dict[str, int]:
        return dict(self.core.status()["drops"])

    @property
    def sent(self) -> dict[str, int]:
        """Messages sent by kind: 'netconf' (configs), 'ok', 'access_denied', 'not_found', 'rendezvous'."""
        return dict(self.core.status()["sent"])

    @property
    def relayed_packets(self) -> int:
        return int(self.core.status()["relayed_packets"])


# -- a world: one clock, one network, members and maybe a controller ---------------------------------------------


class World:
    """Members (and a controller) on one fake network under one fake clock.

    run() advances time in TICK_S steps, ticking every party at each step and delivering each
    datagram at its arrival time; settle() delivers what is due now without advancing time.
    """

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.network = FakeNetwork()
        self.members: list[Member] = []
        self.controller: Controller | None = None
        self.down: set[Any] = set()  # parties that neither tick nor send nor receive (crashed, unplugged)
        self._next_tick_s = TICK_S
        self.network.rules.append(self._down_rule)

    def _down_rule(self, sent: Sent) -> bool:
        return sent.sender in self.down or self.network.parties.get(sent.address) in self.down

    @property
    def now(self) -> float:
        return self.clock.now

    @now.setter
    def now(self, value: float) -> None:
        """Jump to a time without ticking (what a test of a single instant wants)."""
        self.clock.now = value

    # -- building
    def add_member(self, number: int | None = None, **kwargs: Any) -> Member:
        return self.plug_in(Member(len(self.members) + 1 if number is None else number, clock=self.clock, **kwargs))

    def add_controller(self, storage_url: str, **kwargs: Any) -> Controller:
        assert self.controller is None
        self.controller = Controller(storage_url, self.clock, **kwargs)
        self.network.attach(self.controller)
        return self.controller

    def plug_in(self, member: Member) -> Member:
        """An existing member joins the network (give it this world's clock when creating it)."""
        self.members.append(member)
        self.network.attach(member)
        return member

    def unplug(self, member: Member) -> None:
        self.members.remove(member)
        self.network.detach(member)

    def replace(self, old: Member, new: Member) -> Member:
        self.members[self.members.index(old)] = new
        self.network.replace(old, new)
        return new

    def behind_nat(self, *members: Member) -> NatFilter:
        """Put members behind NAT filtering from now on (before they first send, as a NAT sees everything)."""
        nat = NatFilter(*(m.endpoint for m in members))
        self.network.rules.append(nat)
        return nat

    def restart_member(self, member: Member) -> Member:
        """Same identity and address, all state lost (the caller rejoins or applies configs)."""
        return self.replace(member, member.restarted())

    def restart_controller(self, greet: bool = True) -> int:
        """The controller process restarts on the same database; returns how many members it greeted."""
        assert self.controller is not None
        self.controller.restart()
        greeted = self.controller.greet_members() if greet else 0
        self.settle()
        return greeted

    def parties(self) -> list[Any]:
        everyone: list[Any] = [self.controller] if self.controller is not None else []
        return everyone + [m for m in self.members]

    # -- time
    def deliver(self, now: float | None = None, drop: Rule | None = None, max_rounds: int = 50) -> list[Sent]:
        return self.network.deliver(self.clock.now if now is None else now, drop, max_rounds)

    def settle(self) -> list[Sent]:
        """Deliver everything due now (and what it causes), without advancing time."""
        return self.deliver()

    def tick(self, now: float | None = None) -> list[Sent]:
        """Every running party's timers fire at `now`, then what they sent is delivered."""
        if now is not None:
            self.clock.now = now
        for party in self.parties():
            if party not in self.down:
                party.tick(self.clock.now)
        return self.deliver()

    def run(self, seconds: float, until: Callable[[], bool] | None = None) -> float:
        """Advance fake time by `seconds` (or until `until()` holds); returns the fake time it took."""
        start = self.clock.now
        end = start + seconds
        while True:
            if until is not None and until():
                return self.clock.now - start
            self._next_tick_s = max(self._next_tick_s, self.clock.now)
            step = min(self._next_tick_s, self.network.next_due_s())
            if step > end + 1e-9:
                break
            self.clock.now = step
            if step == self._next_tick_s:
                self._next_tick_s = round(step + TICK_S, 9)
                self.tick()
            else:
                self.deliver()
        self.clock.now = end
        if until is not None and not until():
            raise AssertionError(f"not reached within {seconds} s of fake time")
        return seconds

    def close(self) -> None:
        if self.controller is not None:
            self.controller.close()


def controller_of(world: World) -> Controller:
    assert world.controller is not None
    return world.controller
