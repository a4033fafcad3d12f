"""Light members for scale.py: the member-side code a config change travels through, and nothing else.

10,000 full NodeCores each holding a 10,000-member network are 10^8 peer
entries: they do not fit in one process. A LightMember is what matters for
propagation, real: its own Noise session with the controller (real
handshake, real sealed datagrams in the real wire format) and the real
Membership machine (l2mesh/node/membership.py: netconf requests with their
proof, answers, NetconfDelta parse -> verify_signed_delta -> apply_delta).
Left out: the switch, peers, paths, the TAP, and timers (members are not
ticked: no refresh requests, no keepalives).

Shared between members, immutable: the parsed full config every member
starts from (one member fetches and verifies it for real; the others hold
the same object, as a member restarted with its cached config would hold
its own copy), with its DeltaBase (member hashes and ids), so each member
costs its session and Membership until a delta gives it its own member
tuple (apply_delta reuses the unchanged MemberConfig objects: a tuple of
pointers per member). One AEAD scratch buffer for all sessions (the
session table's scratch is per process in a daemon anyway).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from l2mesh.crypto.aead import AeadScratch
from l2mesh.fragments import Reassembler
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.netconf import NetworkConfig
from l2mesh.netconf_delta import DeltaBase
from l2mesh.node.decisions import ApplyConfig, Decision, DenyNetwork, MarkNetworkOk, SendMessage, TrustController
from l2mesh.node.events import NetworkStatus
from l2mesh.node.membership import Joined, Membership
from l2mesh.session import SessionError, SessionTable
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import MessageKind, NetconfResponse
from l2mesh.wire.packets import PacketType

Endpoint = tuple[str, int]
HANDSHAKE_RETRY_S = 1.0  # what a member waits for the controller's handshake response before trying again


@dataclass
class HeldNetwork:
    """What Membership reads of the core's network state: the config held."""

    config: NetworkConfig | None
    status: NetworkStatus = NetworkStatus.REQUESTING


class LightMember:
    def __init__(self, identity: Identity, endpoint: Endpoint, network_id: int, controller: PublicIdentity,
                 controller_endpoint: Endpoint, wall_clock_s: Callable[[], float], scratch: AeadScratch,
                 shared: DeltaBase | None = None, parse_whole: bool = True) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.endpoint = endpoint
        self.network_id = network_id
        self.controller = controller
        self.controller_endpoint = controller_endpoint
        self.held = HeldNetwork(shared.config if shared is not None else None,
                                NetworkStatus.OK if shared is not None else NetworkStatus.REQUESTING)
        self.drops: Counter[str] = Counter()
        self.membership = Membership(identity, {network_id: self.held}, self.drops, wall_clock_s)  # type: ignore[dict-item]
        if shared is not None:
            # What Membership would compute from the held config on the first delta (O(members) hashes):
            # shared, as the config is.
            self.membership._delta_bases[network_id] = shared
            # Holding a whole config signed lately (a daemon's cache): its requests name its revision, not 0.
            self.membership.joined[network_id] = Joined(controller_endpoint, signed_wall_s=shared.config.timestamp_s)
        self.table = SessionTable(identity.x25519_private, wall_clock_ns=lambda: int(wall_clock_s() * 1e9))
        self.table.scratch = scratch
        self.session = self.table.session_for(controller.x25519_public)
        self.queued: list[bytes] = []  # messages waiting for the session
        self.outbox: list[bytes] = []  # datagrams for the controller
        self.initiated_s = -1e18
        self.reassembler: Reassembler | None = None  # made when a fragment comes (a whole config)
        self.signed: bytes | None = None  # the last whole signed config (only the member that fetches the shared one)
        self.answers = 0
        self.cookie_replies = 0  # the controller was under load: initiations retried with mac2
        # False (a cold join storm at sizes where every member parsing every whole config it is sent would take hours
        # in one process): whole configs are opened and reassembled, counted, not verified or parsed.
        self.parse_whole = parse_whole
        self.whole_configs = 0
        self.cpu_s = 0.0
        self.goal: Callable[[LightMember], bool] | None = None
        self.reached_s: float | None = None

    # -- driving
    def aim(self, goal: Callable[["LightMember"], bool] | None) -> None:
        self.cpu_s, self.goal, self.reached_s = 0.0, goal, None

    def join(self, now: float) -> None:
        self._timed(lambda: self._decide(self.membership.join(
            self.network_id, self.controller_endpoint, now, controller_identity=self.controller), now))

    def retry(self, now: float) -> None:
        """No session yet, HANDSHAKE_RETRY_S after the last initiation (the controller limits handshakes per second)."""
        if not self.session.established and now - self.initiated_s >= HANDSHAKE_RETRY_S:
            self._timed(lambda: self._initiate(now))

    def receive(self, data: bytes, now: float) -> None:
        self._timed(lambda: self._receive(memoryview(data), now))

    def _timed(self, call: Callable[[], Any]) -> None:
        start = time.thread_time()
        call()
        self.cpu_s += time.thread_time() - start
        if self.goal is not None and self.reached_s is None and self.goal(self):
            self.reached_s = time.perf_counter()

    # -- the wire
    def _initiate(self, now: float) -> None:
        self.initiated_s = now
        self.outbox.append(self.session.create_initiation(now))

    def _receive(self, data: memoryview, now: float) -> None:
        kind = data[0] if data else -1
        try:
            if kind == PacketType.HANDSHAKE_RESPONSE:
                self.table.handle_response(data, now)
                queued, self.queued = self.queued, []
                for message in queued:
                    self._seal(message, now)
                return
            if kind == PacketType.COOKIE_REPLY:
                # The controller is under load (issue 16): the next retry carries the cookie's mac2.
                self.table.handle_cookie_reply(data, now)
                self.cookie_replies += 1
                return
            if kind == PacketType.FRAGMENT:
                if self.reassembler is None:
                    self.reassembler = Reassembler()
                whole = self.reassembler.add(data, self.controller_endpoint, now)
                if whole is None:
                    return
                data = memoryview(whole)
                kind = data[0]
            if kind != PacketType.TRANSPORT:
                self.drops["unexpected_packet_type"] += 1
                return
            _, plaintext = self.table.open(data, now)
        except SessionError:
            self.drops["session_rejected"] += 1
            return
        message = bytes(plaintext)
        if not message:
            return
        if message[0] == MessageKind.NETCONF_RESPONSE and not self.parse_whole:
            self._count_answer(message)
        elif message[0] == MessageKind.NETCONF_RESPONSE:
            self.answers += 1
            self._decide(self.membership.netconf_response(self.controller.node_id, message, now), now)
        elif message[0] == MessageKind.NETCONF_DELTA:
            self._decide(self.membership.netconf_delta(self.controller.node_id, message, now), now)
        elif message[0] != MessageKind.KEEPALIVE:
            self.drops["unhandled_message"] += 1

    def _count_answer(self, message: bytes) -> None:
        response = parse_or_none(NetconfResponse, message)
        if response is None:
            self.drops["netconf_response_malformed"] += 1
            return
        if response.chunk_index == response.chunk_count - 1:  # chunks come in order here (no loss, no reordering)
            self.answers += 1
            if response.signed_config:
                self.whole_configs += 1
            self.held.status = NetworkStatus[str(response.status)]

    def _seal(self, message: bytes, now: float) -> None:
        packet = self.session.seal(message, now)
        if packet is None:
            self.queued.append(message)
            if self.session.pending is None:
                self._initiate(now)
            return
        self.outbox.append(bytes(packet))

    def _decide(self, decisions: list[Decision], now: float) -> None:
        """What the node core does with Membership's decisions, for the ones a light member has a use for."""
        for decision in decisions:
            if isinstance(decision, SendMessage):
                self._seal(decision.message, now)
            elif isinstance(decision, ApplyConfig):
                self.held.config, self.held.status = decision.config, NetworkStatus.OK
                if decision.signed is not None:
                    self.signed = decision.signed
            elif isinstance(decision, DenyNetwork):
                self.held.config, self.held.status = None, decision.status
            elif isinstance(decision, MarkNetworkOk):
                self.held.status = NetworkStatus.OK
            elif not isinstance(decision, TrustController):
                self.drops[f"ignored_{type(decision).__name__}"] += 1  # peers, endpoints: not modelled here

    # -- what the phases look at
    @property
    def revision(self) -> int | None:
        return None if self.held.config is None else self.held.config.revision

    def lists(self, node_id: int) -> bool:
        config = self.held.config
        if config is None:
            return False
        base = self.membership._delta_bases.get(self.network_id)
        if base is not None and base.config is config:
            return node_id in base.ids
        return config.member(node_id) is not None
