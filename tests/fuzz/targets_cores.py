"""Stateful fuzz targets: the node, controller and root cores' receive paths, and the admin API.

Each holds a live world (worlds.py). Inputs from strangers are outer
packets, handshakes given a correct mac1 half of the time so the Noise code
behind the screen runs too. Inputs from a peer, the controller or a member
are plaintext messages sealed with the live session's real keys. Nothing
may escape a core's datagram entry point: it documents "counted and
dropped, never raised".
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import Any

from hypothesis import strategies as st

from l2mesh.edge.controller.api import build_app
from l2mesh.fragments import fragment
from l2mesh.netconf_delta import DELTA_SIGNATURE_CONTEXT
from l2mesh.wire.messages import (
    NETCONF_CHUNK_BYTES,
    ROOT_REGISTER_CONTEXT,
    EndpointHints,
    MessageKind,
    NetconfDelta,
    NetconfResponse,
    PathProbe,
    RootLookup,
    RootRegister,
)
from l2mesh.wire.packets import (
    FRAGMENT_HEADER_BYTES,
    HANDSHAKE_INIT_BYTES,
    HANDSHAKE_RESPONSE_BYTES,
    MAC_BYTES,
    MAX_FRAGMENTS,
    RELAY_HEADER,
    PacketType,
)
from l2mesh.session import SessionTable
from tests.fuzz import corpus
from tests.fuzz.targets import Target, json_bytes_like, tagged_binary
from tests.fuzz.worlds import MeshWorld, RootFuzzWorld, outcome
from tests.unit.harness import Controller

STEP_S = 0.001  # fake time per input: rate limits refill, sessions stay well inside their lifetime
TICK_EVERY = 100  # the receiving core's timers run every so many inputs
STRANGERS = [(f"198.18.{200 + n // 250}.{n % 250 + 1}", 9993) for n in range(500)]
FRAGMENT_BYTES = 200
MAX_WIRE_REVISION = 2**64 - 1  # what NetconfResponse and NetconfDelta carry


def choose(data: bytes, ways: int, salt: int = 0) -> int:
    """A choice made from the input itself, so a saved input replays the same way."""
    return (zlib.crc32(data) ^ salt) % ways


def remac(data: bytes, receiver_static: bytes) -> bytes:
    """A handshake packet of the right length gets a correct mac1 again (half the time): past the screen, into Noise."""
    sizes: dict[int, int] = {PacketType.HANDSHAKE_INIT: HANDSHAKE_INIT_BYTES, PacketType.HANDSHAKE_RESPONSE: HANDSHAKE_RESPONSE_BYTES}
    if data and sizes.get(data[0]) == len(data) and choose(data, 2, 0x5EED):
        return corpus.with_macs(data[: -2 * MAC_BYTES], receiver_static)
    return data


def message_strategy() -> st.SearchStrategy[bytes]:
    return tagged_binary([int(kind) for kind in MessageKind])


def packet_strategy() -> st.SearchStrategy[bytes]:
    return tagged_binary([int(kind) for kind in PacketType])


class MeshTarget(Target):
    """A target on a MeshWorld, rebuilt every reset_every inputs. Subclasses implement seeds() and deliver()."""

    reset_every = 2000
    mesh: MeshWorld | None = None

    def setup(self) -> list[bytes]:
        self.close()
        self.mesh = MeshWorld.build()
        self.now = self.mesh.now
        self.count = 0
        self.seeds = self.make_seeds(self.mesh)
        return self.seeds

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        raise NotImplementedError

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        """Hand the input to the core under test; a label when it never got there."""
        raise NotImplementedError

    def counters(self, mesh: MeshWorld) -> Counter[str]:
        """Every drop counter of member A: its core's, its reassembler's, its switch's."""
        core = mesh.a.core
        total = core.drops + core.reassembler.drops
        for state in core.networks.values():
            total.update(state.switch.drops)
        return total

    def run(self, data: bytes) -> str:
        mesh = self.mesh
        assert mesh is not None
        self.now += STEP_S
        self.count += 1
        mesh.world.now = self.now
        before = self.counters(mesh)
        written = len(mesh.a.transmit.frames)
        skipped = self.deliver(mesh, data)
        if skipped is not None:
            return skipped
        if self.count % TICK_EVERY == 0:
            mesh.a.tick(self.now)
        label = outcome(before, self.counters(mesh), "written" if len(mesh.a.transmit.frames) > written else "accepted")
        mesh.forget_output()
        return label

    def close(self) -> None:
        if self.mesh is not None:
            self.mesh.close()
            self.mesh = None


class NodeFromStranger(MeshTarget):
    """Outer packets to member A from addresses it does not know (and now and then from B's)."""

    name = "node.from_unknown"

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        self.static = mesh.a.identity.x25519_public
        # A genuine initiation from B, made on a table of its own so B's live session is left alone.
        initiation = SessionTable(mesh.b.identity.x25519_private).session_for(self.static).create_initiation(self.now)
        return [initiation, *corpus.outer_packets(mesh.names(), self.static)]

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        data = remac(data, self.static)
        source = mesh.b.endpoint if choose(data, 20) == 0 else STRANGERS[choose(data, len(STRANGERS), 1)]
        mesh.a.core.datagram_received(memoryview(data), source, self.now)
        return None

    def strategy(self) -> st.SearchStrategy[bytes]:
        return packet_strategy()


class NodeFromPeer(MeshTarget):
    """Messages B sends A in their live session: frames of every kind, subscriptions, probes, hints."""

    name = "node.from_peer"

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        return corpus.inner_messages(mesh.names())

    def session(self, mesh: MeshWorld) -> Any:
        return mesh.b.core.peers[mesh.a.node_id].session

    def source(self, mesh: MeshWorld) -> Any:
        return mesh.b.endpoint

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        session = self.session(mesh)
        sealed = session.seal(data, self.now) if session is not None else None
        if sealed is None:
            self.setup()  # the fuzz input ended the session (a config without B, say): start over
            return "session_gone"
        packet, source = bytes(sealed), self.source(mesh)
        way = choose(data, 10)
        if way == 1:  # relayed by the controller, as when no direct path works
            packet = RELAY_HEADER.pack(PacketType.RELAY, 0, mesh.a.node_id.to_bytes(5, "big"),
                                       self.sender_id(mesh).to_bytes(5, "big")) + packet
            source = mesh.controller.endpoint
        if way == 0 and len(packet) > FRAGMENT_BYTES:
            # Small fragments, but never more than a packet may have (a big config needs bigger ones).
            size = max(FRAGMENT_BYTES, -(-(len(packet) - FRAGMENT_HEADER_BYTES) // MAX_FRAGMENTS) + FRAGMENT_HEADER_BYTES)
            for piece in fragment(packet, size):
                mesh.a.core.datagram_received(memoryview(piece), source, self.now)
        else:
            mesh.a.core.datagram_received(memoryview(packet), source, self.now)
        return None

    def sender_id(self, mesh: MeshWorld) -> int:
        return mesh.b.node_id

    def strategy(self) -> st.SearchStrategy[bytes]:
        return message_strategy()


class NodeFromController(NodeFromPeer):
    """Messages the controller sends A in their live session (configs, deltas, gather replies, hints)."""

    name = "node.from_controller"

    def session(self, mesh: MeshWorld) -> Any:
        client = mesh.controller.core.clients.by_node.get(mesh.a.node_id)
        return None if client is None else client.session

    def source(self, mesh: MeshWorld) -> Any:
        return mesh.controller.endpoint

    def sender_id(self, mesh: MeshWorld) -> int:
        return mesh.controller.node_id


class NodeNetconf(NodeFromController):
    """A network config body, signed by the controller's real key, sent to A as a one-chunk NetconfResponse."""

    name = "node.netconf"
    reset_every = 500
    revision_fields: tuple[tuple[bytes, int], ...] = ((b"revision", 1),)

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        held = mesh.a.config()
        assert held is not None
        self.seed_revision = held.revision
        newer = held.with_changes(revision=held.revision + 1)
        return [newer.canonical_bytes(), newer.with_changes(members=newer.members[:1]).canonical_bytes()]

    def refresh_revisions(self, mesh: MeshWorld, data: bytes) -> bytes:
        """Revisions in the document that were one past the seeds' become one past what A holds now.

        An applied input moves A's revision on, and every seed would then be
        stale; as AFL fixes up checksums, this keeps mutants fresh instead.
        """
        held = mesh.a.config()
        if held is None or held.revision == self.seed_revision:
            return data
        for name, offset in self.revision_fields:
            data = re.sub(rb'("%s":\s*)%d\b' % (name, self.seed_revision + offset),
                          lambda match: match.group(1) + b"%d" % (held.revision + offset), data)
        return data

    def wrap(self, mesh: MeshWorld, data: bytes) -> bytes | None:
        held = mesh.a.config()
        return NetconfResponse.build({
            "network_id": mesh.network_id, "status": "OK", "revision": min((held.revision if held else 0) + 1, MAX_WIRE_REVISION),
            "chunk_index": 0, "chunk_count": 1, "signed_config": mesh.controller.identity.sign(data) + data,
        })

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        message = self.wrap(mesh, self.refresh_revisions(mesh, data))
        if message is None:
            return "too_big_to_send"
        return super().deliver(mesh, message)

    def strategy(self) -> st.SearchStrategy[bytes]:
        return json_bytes_like(self.seeds)


class NodeNetconfDelta(NodeNetconf):
    """A netconf delta body, signed as a delta by the controller, sent to A from the revision it holds."""

    name = "node.netconf_delta"
    revision_fields = ((b"from_revision", 0), (b"to_revision", 1))

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        held = mesh.a.config()
        assert held is not None
        self.seed_revision = held.revision
        return corpus.delta_documents(held)

    def wrap(self, mesh: MeshWorld, data: bytes) -> bytes | None:
        signed = mesh.controller.identity.sign(DELTA_SIGNATURE_CONTEXT + data) + data
        if len(signed) > NETCONF_CHUNK_BYTES:
            return None
        held = mesh.a.config()
        revision = min(held.revision if held else 0, MAX_WIRE_REVISION - 1)
        return NetconfDelta.build({"network_id": mesh.network_id, "from_revision": revision, "to_revision": revision + 1,
                                   "signed_delta": signed})


class NodeTapFrame(MeshTarget):
    """Frames A's TAP hands the daemon (ARP, IPv4/IPv6, multicast, VLAN, bridge frames): the switch's and rules' way out."""

    name = "node.tap_frame"

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        names = mesh.names()
        outbound = corpus.Names(names.network_id, names.receiver_id, names.sender_id, names.receiver_ip, names.sender_ip)
        return corpus.ethernet_frames(outbound)

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        mesh.a.core.frame_from_tap(mesh.network_id, data, self.now)
        return None

    def strategy(self) -> st.SearchStrategy[bytes]:
        return ethernet_strategy(self.seeds)


def ethernet_strategy(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed frame's addresses (or the broadcast), a known or any ethertype, any payload."""
    macs = sorted({seed[:6] for seed in seeds} | {seed[6:12] for seed in seeds})
    ethertypes = [0x0800, 0x0806, 0x86DD, 0x8100, 0x88A8, 0x88B5, 0x88CC]
    return st.builds(
        lambda dst, src, ethertype, payload: dst + src + ethertype.to_bytes(2, "big") + payload,
        st.sampled_from(macs), st.sampled_from(macs), st.one_of(st.sampled_from(ethertypes), st.integers(0, 0xFFFF)),
        st.binary(max_size=200),
    )


# -- the controller ----------------------------------------------------------------------------------------


class ControllerFromStranger(MeshTarget):
    """Outer packets to the controller from addresses it does not know: handshakes, identity requests, relay envelopes."""

    name = "controller.from_unknown"

    def counters(self, mesh: MeshWorld) -> Counter[str]:
        return Counter(mesh.controller.core.drops)

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        controller = mesh.controller
        self.static = controller.identity.x25519_public
        names = corpus.Names(mesh.network_id, mesh.a.node_id, controller.node_id)
        relay = RELAY_HEADER.pack(PacketType.RELAY, 0, mesh.b.node_id.to_bytes(5, "big"), mesh.a.node_id.to_bytes(5, "big"))
        return [*corpus.outer_packets(names, self.static), relay + b"\x03" + bytes(40)]

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        data = remac(data, self.static)
        source = mesh.a.endpoint if choose(data, 20) == 0 else STRANGERS[choose(data, len(STRANGERS), 1)]
        mesh.controller.receive(data, source, self.now)
        return None

    def strategy(self) -> st.SearchStrategy[bytes]:
        return packet_strategy()


class ControllerFromMember(ControllerFromStranger):
    """Messages member A sends the controller in their live session: netconf requests with real proofs, multicast, hints."""

    name = "controller.from_member"

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        return corpus.member_to_controller_messages(mesh.a.identity, mesh.network_id, mesh.b.node_id)

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        session = mesh.a.core.peers[mesh.controller.node_id].session
        sealed = session.seal(data, self.now) if session is not None else None
        if sealed is None:
            self.setup()
            return "session_gone"
        mesh.controller.receive(bytes(sealed), mesh.a.endpoint, self.now)
        return None

    def strategy(self) -> st.SearchStrategy[bytes]:
        return message_strategy()


# -- the root -------------------------------------------------------------------------------------------------


class RootTarget(Target):
    reset_every = 3000

    def setup(self) -> list[bytes]:
        self.world = RootFuzzWorld.build()
        return self.make_seeds(self.world)

    def make_seeds(self, world: RootFuzzWorld) -> list[bytes]:
        raise NotImplementedError

    def run(self, data: bytes) -> str:
        root = self.world.root
        root.now += STEP_S
        before = Counter(root.core.drops)
        stream = choose(data, 4, 2) == 0  # as if framed over a TCP relay connection
        self.deliver(data, stream)
        label = outcome(before, root.core.drops)
        root.transmit.datagrams.clear()
        root.transmit.segmented.clear()
        return label

    def deliver(self, data: bytes, stream: bool) -> None:
        raise NotImplementedError


class RootFromStranger(RootTarget):
    name = "root.from_unknown"

    def make_seeds(self, world: RootFuzzWorld) -> list[bytes]:
        self.static = world.root.identity.x25519_public
        names = corpus.Names(0, world.sender.node_id, world.other.node_id)
        return corpus.outer_packets(names, self.static)

    def deliver(self, data: bytes, stream: bool) -> None:
        root = self.world.root
        data = remac(data, self.static)
        root.core.datagram_received(memoryview(data), STRANGERS[choose(data, len(STRANGERS), 1)], root.now, stream)

    def strategy(self) -> st.SearchStrategy[bytes]:
        return packet_strategy()


class RootFromNode(RootTarget):
    """Messages a registered node sends the root in its live session: register (real proof), look-up, meet, probe."""

    name = "root.from_node"

    def make_seeds(self, world: RootFuzzWorld) -> list[bytes]:
        client, root_id = world.sender.client, world.root.identity.node_id
        proof = client.identity.sign(ROOT_REGISTER_CONTEXT + client.identity.x25519_public + root_id.to_bytes(5, "big"))
        names = corpus.Names(0, world.sender.node_id, world.other.node_id)
        return [
            RootRegister.build({"ed25519": client.identity.ed25519_public, "proof": proof,
                                "local_endpoints": [("192.168.1.2", 9993)]}),
            RootLookup.build({"node_id": world.other.node_id}),
            EndpointHints.build({"node_id": world.other.node_id, "punch": True, "endpoints": []}),
            PathProbe.build({"probe_id": 3}),
            *corpus.inner_messages(names)[-12:],
        ]

    def deliver(self, data: bytes, stream: bool) -> None:
        root = self.world.root
        sealed = root_packet = world_seal(self.world, data)
        if choose(data, 8, 3) == 0:  # relayed by the root to the other node
            root_packet = self.world.sender.client.envelope(self.world.other.node_id, sealed)
        root.core.datagram_received(memoryview(root_packet), self.world.sender.endpoint, root.now, stream)

    def strategy(self) -> st.SearchStrategy[bytes]:
        return message_strategy()


def world_seal(world: RootFuzzWorld, data: bytes) -> bytes:
    return world.sender.client.seal(data, world.root.now)


# -- the admin API ----------------------------------------------------------------------------------------------


class _HarnessController:
    """The API's view of a controller (edge/controller/api.py's Controller), on the harness's synchronous one."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def read(self, function: Any) -> Any:
        return function(self.controller.core)

    async def change(self, perform: Any) -> Any:
        return self.controller._admin(perform(self.controller.storage))


API_TOKEN = "fuzz-token"


class AdminApi(MeshTarget):
    """Admin API requests ('METHOD PATH' line, JSON body) through the real Starlette app and the real controller.

    Handled: any answer below 500. An exception out of the app is a 500 with a traceback in the log.
    """

    name = "admin.api"
    reset_every = 1000
    methods = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})

    def make_seeds(self, mesh: MeshWorld) -> list[bytes]:
        self.app = build_app(_HarnessController(mesh.controller), API_TOKEN, mesh.controller.node_id)
        return corpus.admin_requests(mesh.network_id, mesh.a.node_id)

    def counters(self, mesh: MeshWorld) -> Counter[str]:
        return Counter()

    def deliver(self, mesh: MeshWorld, data: bytes) -> str | None:
        line, _, body = data.partition(b"\n")
        method, _, path = line.decode("latin-1").partition(" ")
        if method not in self.methods or not path.startswith("/"):
            return "not_a_request"
        return f"status_{asgi_request(self.app, method, path, body)}"

    def strategy(self) -> st.SearchStrategy[bytes]:
        bodies = json_bytes_like([seed.partition(b"\n")[2] for seed in self.seeds if seed.partition(b"\n")[2]])
        lines = st.sampled_from([seed.partition(b"\n")[0] for seed in self.seeds])
        return st.builds(lambda line, body: line + b"\n" + body, lines, bodies)


def asgi_request(app: Any, method: str, path: str, body: bytes) -> int:
    """One admin API request (bearer token, JSON body); its status, below 500."""
    status, _, _ = asgi_call(app, method, path, body, [(b"authorization", f"Bearer {API_TOKEN}".encode()),
                                                        (b"content-type", b"application/json")])
    return status


def asgi_call(app: Any, method: str, path: str, body: bytes,
              headers: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI app, driven without an event loop (the app awaits nothing real).

    Its status, headers and body; an answer of 500 or more (or none) raises, as it is a traceback in the log.
    """
    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": query.encode("utf-8", "surrogateescape"),
        "root_path": "", "scheme": "http", "headers": headers, "server": ("127.0.0.1", 9995), "client": ("127.0.0.1", 40000),
    }
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []
    answer_headers: list[tuple[bytes, bytes]] = []
    answer = bytearray()

    async def receive() -> dict[str, Any]:
        return inbox.pop() if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            answer_headers.extend(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    coroutine = app(scope, receive, send)
    try:
        while True:
            coroutine.send(None)
    except StopIteration:
        pass
    if not status or status[0] >= 500:
        raise AssertionError(f"{method} {path} answered {status[0] if status else 'nothing'}")
    return status[0], answer_headers, bytes(answer)


def core_targets() -> list[Target]:
    return [
        NodeFromStranger(), NodeFromPeer(), NodeFromController(), NodeNetconf(), NodeNetconfDelta(), NodeTapFrame(),
        ControllerFromStranger(), ControllerFromMember(), RootFromStranger(), RootFromNode(), AdminApi(),
    ]

