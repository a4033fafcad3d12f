"""Fuzz targets: every entry point that takes bytes from outside, as a function of bytes.

A Target builds what it needs (setup, again every `reset_every` inputs so
state stays bounded), offers valid seeds for the mutator and a hypothesis
strategy for generated inputs, and runs one input, returning an outcome
label (the drop counter it raised, the error it refused with). An
exception of a type in `handled` is a documented refusal (the edge turns
it into a drop counter or one line); anything else is a finding. The
stateful targets live in targets_cores.py; this file holds the parsers,
the documents and the files, and the registry of all.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.opcode
from hypothesis import strategies as st

from l2mesh.edge.identity_file import load_identity_file
from l2mesh.edge.node.dns_answers import reply_to
from l2mesh.edge.node.state_dir import NodeState
from l2mesh.edge.roots import load_root_pins
from l2mesh.errors import L2meshError
from l2mesh.fragments import Reassembler, fragment
from l2mesh.identity import Identity
from l2mesh.ids import make_network_id, parse_mac, parse_network_id, parse_node_id
from l2mesh.managed_routes import parse_route_spec
from l2mesh.netconf import NetconfError, parse_endpoint, verify_signed_config
from l2mesh.node.join_options import JoinOptions
from l2mesh.node.name_table import NameTable
from l2mesh.node.route_plan import UnderlayRoute, plan_routes
from l2mesh.netconf_delta import DELTA_SIGNATURE_CONTEXT, DeltaBase, apply_delta, verify_signed_delta
from l2mesh.portmap.client import MappingClient
from l2mesh.portmap.natpmp import NatPmp
from l2mesh.portmap.pcp import Pcp
from l2mesh.root_spec import parse_root_spec
from l2mesh.rules.compile import compile_rules
from l2mesh.rules.fields import frame_fields
from l2mesh.rules.syntax import format_rules, parse_rules
from l2mesh.wire import bridge
from l2mesh.wire.codec import parse_message, parse_packet
from l2mesh.wire.errors import ParseError, parse_exact
from l2mesh.wire.messages import MessageKind
from l2mesh.wire.packets import TRANSPORT_HEADER, PacketType
from l2mesh.wire.stream import FrameDecoder, HeadReader, StreamError, check_request, check_response
from tests.fuzz import corpus
from tests.unit import rules_strategies

PORTMAP_PORT = 9993
PCP_NONCE = bytes(range(1, 13))
PCP_CLIENT_IP = "198.19.1.2"
UNDERLAY_ROUTES = (UnderlayRoute("0.0.0.0/0", "198.18.1.1", "eth0"), UnderlayRoute("198.18.1.0/24", None, "eth0"),
                   UnderlayRoute("fd00:1::/64", None, "eth0"))
UNDERLAY_HOSTS = ("198.18.0.1", "198.18.2.2")

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40),
    st.sampled_from(["10.147.17.5/24", "fd00::1/64", "198.18.1.2:9993", "[2001:db8::1]:9993", "0a1b2c3d4e", "ff" * 8]),
)
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=12)


def json_bytes_like(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed document with one of its top-level fields set to a generated JSON value (or any JSON value at all)."""
    docs = [json.loads(seed) for seed in seeds]

    def with_field(doc_index: int, key_choice: int, value: Any) -> bytes:
        doc = json.loads(json.dumps(docs[doc_index % len(docs)]))
        if isinstance(doc, dict) and doc:
            keys = sorted(doc)
            doc[keys[key_choice % len(keys)]] = value
        return json.dumps(doc).encode()

    return st.one_of(
        st.builds(with_field, st.integers(0, 100), st.integers(0, 100), json_values),
        json_values.map(lambda v: json.dumps(v).encode()),
    )


def tagged_binary(tags: list[int]) -> st.SearchStrategy[bytes]:
    """A known leading type byte and anything after it: past the dispatch, into one format's parser."""
    return st.builds(lambda tag, tail: bytes([tag]) + tail, st.sampled_from(tags), st.binary(max_size=300))


class Target:
    """One entry point. Subclasses set name and handled, and implement setup() and run()."""

    name = ""
    handled: tuple[type[BaseException], ...] = ()
    reset_every = 0  # rebuild the state after this many inputs (0: never)
    weight = 1.0  # share of the inputs, relative to the other targets (slow targets get fewer)

    def setup(self) -> list[bytes]:
        """Build the state; the valid seeds for the mutator."""
        raise NotImplementedError

    def run(self, data: bytes) -> str:
        raise NotImplementedError

    def strategy(self) -> st.SearchStrategy[bytes]:
        return st.binary(max_size=1500)

    def close(self) -> None:
        pass


class FunctionTarget(Target):
    """A stateless parser: seeds fixed once, run is a function."""

    def __init__(self, name: str, seeds: Callable[[], list[bytes]], run: Callable[[bytes], str],
                 handled: tuple[type[BaseException], ...], strategy: Callable[[], st.SearchStrategy[bytes]] | None = None) -> None:
        self.name = name
        self.handled = handled
        self._seeds = seeds
        self._run = run
        self._strategy = strategy

    def setup(self) -> list[bytes]:
        return self._seeds()

    def run(self, data: bytes) -> str:
        return self._run(data)

    def strategy(self) -> st.SearchStrategy[bytes]:
        return self._strategy() if self._strategy is not None else super().strategy()


# -- wire formats ------------------------------------------------------------------------------------


def _parsed(kind: Any) -> str:
    return getattr(kind, "name", str(kind)).lower()


def run_packet(data: bytes) -> str:
    return _parsed(parse_packet(data)[0])


def run_message(data: bytes) -> str:
    return _parsed(parse_message(data)[0])


def run_bridge(data: bytes) -> str:
    """Both bridge frames (the wire cannot tell a hello from a topology change with no bridges: where it came from does)."""
    taken = []
    for name, definition in (("hello", bridge.BridgeHello), ("topology_change", bridge.TopologyChange)):
        try:
            parse_exact(definition, data)
            taken.append(name)
        except ParseError:
            pass
    return "+".join(taken) or "refused"


def run_stream(data: bytes) -> str:
    """Both ends of a TCP relay: the head read in three chunks and checked, then the frames that follow."""
    reader = HeadReader()
    cut = len(data) // 3
    head = reader.feed(data[:cut]) or reader.feed(data[cut:])
    if head is None:
        return "head_incomplete"
    refused = check_request(head)
    try:
        check_response(head)
        answer = "response_ok"
    except StreamError:
        answer = "response_refused"
    decoder = FrameDecoder()
    rest = reader.rest
    frames = decoder.feed(rest[: len(rest) // 2]) + decoder.feed(rest[len(rest) // 2 :])
    return f"request_{refused or 'ok'}+{answer}+frames_{min(len(frames), 3)}"


TEXT_SEEDS = (b"0a1b2c3d4e", b"0a1b2c3d4e000001", b"52:54:00:12:34:56", b"198.18.1.2:9993", b"0a1b2c3d4e@[2001:db8::1]:9993",
              b"10.10.0.0/16@10.147.17.1")


def text_strategy() -> st.SearchStrategy[bytes]:
    """Valid texts with odd characters around them (every kind of whitespace and control), as people paste them."""
    odd = st.text(alphabet=st.characters(categories=("Zs", "Zl", "Zp", "Cc", "Cf")), max_size=3)
    return st.builds(lambda before, text, after: before.encode() + text + after.encode(), odd, st.sampled_from(TEXT_SEEDS), odd)


def run_text_parsers(data: bytes) -> str:
    """The ids, addresses and specs people and files give: each must take the text or refuse it in one line."""
    text = data.decode("utf-8", "replace")
    taken = []
    for name, parse in (("node_id", parse_node_id), ("network_id", parse_network_id), ("mac", parse_mac),
                        ("endpoint", parse_endpoint), ("root", parse_root_spec), ("route", parse_route_spec)):
        try:
            parse(text)
            taken.append(name)
        except L2meshError:
            pass
    return "+".join(taken) or "refused"


_TAGS = {0x1000000001: frozenset({"guest"}), 0x1000000002: frozenset({"plc", "server"})}


def run_rules(data: bytes) -> str:
    """A rules text as the admin API takes it: parsed, compiled for a member, evaluated on every kind of frame."""
    ruleset = parse_rules(data.decode("utf-8", "replace"))
    compiled = compile_rules(ruleset.rules, 0x1000000001, _TAGS)
    verdicts = {
        matcher.first_match(frame_fields(frame), 0x1000000002) for frame in _RULE_FRAMES for matcher in (compiled.outbound, compiled.inbound)
    }
    return f"rules_{min(len(ruleset.rules), 5)}_verdicts_{len(verdicts)}"


_RULE_FRAMES = corpus.ethernet_frames()


def rules_strategy() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(rules_strategies.rules, max_size=8).map(lambda rules: format_rules(rules).encode()),
        st.text(max_size=200).map(str.encode),
    )


# -- DNS -------------------------------------------------------------------------------------------------------

_DNS_TABLE = NameTable("lab.l2mesh", {"n2": ("10.147.17.2", "fd00::2"), "0a1b2c3d4e": ("10.147.17.2",), "bridge": ()}, serial=9)


def dns_queries() -> list[bytes]:
    """Queries a member's DNS responder gets from the overlay: names it holds and not, every common type, EDNS."""
    queries = [dns.message.make_query(name, rdtype) for name, rdtype in (
        ("n2.lab.l2mesh", "A"), ("n2.lab.l2mesh", "AAAA"), ("lab.l2mesh", "SOA"), ("lab.l2mesh", "ANY"),
        ("nobody.lab.l2mesh", "A"), ("example.com", "A"), ("2.17.147.10.in-addr.arpa", "PTR"), ("bridge.lab.l2mesh", "MX"))]
    queries.append(dns.message.make_query("n2.lab.l2mesh", "A", use_edns=0, payload=4096))
    queries.append(dns.message.make_query("n2.lab.l2mesh", "A", rdclass="CH"))
    notify = dns.message.make_query("lab.l2mesh", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    queries.append(notify)
    return [query.to_wire() for query in queries]


def run_dns(data: bytes) -> str:
    """A query datagram to the responder: every input is answered, refused or ignored, never raised on."""
    reply = reply_to(data, _DNS_TABLE)
    return "ignored" if reply is None else f"rcode_{reply[3] & 0x0F}"


# -- fragments and port mapping -------------------------------------------------------------------------


class FragmentsTarget(Target):
    name = "fragments.reassembly"
    reset_every = 5000

    def setup(self) -> list[bytes]:
        self.reassembler = Reassembler()
        self.now = 0.0
        sealed = TRANSPORT_HEADER.pack(PacketType.TRANSPORT, 7, 9) + bytes(range(256)) * 8
        return fragment(sealed, 300) + fragment(sealed[:400], 64)

    def run(self, data: bytes) -> str:
        self.now += 0.001
        before = Counter(self.reassembler.drops)
        whole = self.reassembler.add(data, ("198.18.1.2", 9993 + len(data) % 3), self.now)
        self.reassembler.expire(self.now)
        raised = sorted(k for k, v in self.reassembler.drops.items() if v > before[k])
        return "+".join(raised) if raised else ("whole" if whole is not None else "held")


class PortmapTarget(Target):
    """A home router's answer to the request a fresh client just sent (NAT-PMP or PCP)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.name = f"portmap.{protocol}"

    def _client(self) -> MappingClient:
        protocol = NatPmp(PORTMAP_PORT) if self.protocol == "natpmp" else Pcp(PORTMAP_PORT, PCP_CLIENT_IP, PCP_NONCE)
        return MappingClient(PORTMAP_PORT, [protocol])

    def setup(self) -> list[bytes]:
        return corpus.portmap_replies(PCP_NONCE, PORTMAP_PORT)

    def run(self, data: bytes) -> str:
        client = self._client()
        client.poll(0.0)
        client.datagram_received(data, 0.1)  # answers the probe
        client.poll(0.2)
        client.datagram_received(data, 0.3)  # answers the mapping request, if the probe was taken
        client.poll(10_000.0)
        return f"{client.state.name.lower()}:{'+'.join(sorted(client.counters)) or '-'}"


# -- signed documents -------------------------------------------------------------------------------------


class SignedConfigTarget(Target):
    """A network config body, signed with the controller's real key (else only the signature check runs)."""

    name = "netconf.signed"

    def setup(self) -> list[bytes]:
        self.controller = Identity.generate()
        self.member = Identity.generate()
        other = Identity.generate()
        self.network_id = make_network_id(self.controller.node_id, 1)
        self.config = corpus.network_config(self.network_id, self.member.node_id, [
            (self.member.public, "10.147.17.1/24", ("198.18.1.2", 9993)), (other.public, "10.147.17.2/24", ("198.18.2.2", 9993))])
        self.seeds = corpus.config_documents(self.config)
        return self.seeds

    def run(self, data: bytes) -> str:
        """Verified, then what a member's edge makes of it: its route plan, its DNS names and their answers."""
        config = verify_signed_config(self.controller.sign(data) + data, self.controller.public, self.network_id,
                                      self.member.node_id, 10.0)
        plan = plan_routes(config, self.member.node_id, JoinOptions(allow_default=True), UNDERLAY_ROUTES, UNDERLAY_HOSTS)
        table = NameTable.from_config(config)
        for label in [table.domain, *list(table.hosts)[:3]]:
            for rdtype in ("A", "SOA"):
                reply_to(dns.message.make_query(f"{label}.{table.domain}.", rdtype).to_wire(), table)
        return f"members_{min(len(config.members), 3)}_routes_{min(len(plan.install), 2)}_{min(len(plan.refused), 2)}"

    handled = (NetconfError,)

    def strategy(self) -> st.SearchStrategy[bytes]:
        return json_bytes_like(self.seeds)


class SignedDeltaTarget(SignedConfigTarget):
    """A netconf delta body, signed as a delta, then applied to the config it was made from."""

    name = "netconf.delta"

    def setup(self) -> list[bytes]:
        super().setup()
        self.base = DeltaBase.of(self.config)
        self.seeds = corpus.delta_documents(self.config)
        return self.seeds

    def run(self, data: bytes) -> str:
        delta = verify_signed_delta(self.controller.sign(DELTA_SIGNATURE_CONTEXT + data) + data, self.controller.public,
                                    self.network_id)
        applied = apply_delta(self.base, delta)
        return f"applied_members_{min(len(applied.config.members), 3)}"


# -- state files ----------------------------------------------------------------------------------------------


class StateFileTarget(Target):
    """A file in a state directory, as a crash, a full disk or a careless edit leaves it."""

    reset_every = 20_000
    handled = (L2meshError,)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"statefile.{kind}"

    directory: tempfile.TemporaryDirectory[str] | None = None

    def setup(self) -> list[bytes]:
        self.close()
        self.directory = tempfile.TemporaryDirectory(prefix="l2mesh-fuzz-state-")
        self.state_dir = Path(self.directory.name)
        identity, controller = Identity.generate(), Identity.generate()
        self.controller_id = controller.node_id
        self.seeds = corpus.state_files(identity, make_network_id(controller.node_id, 1), controller.public)[self.kind]
        return self.seeds

    def run(self, data: bytes) -> str:
        state = NodeState(self.state_dir)
        if self.kind == "identity":
            path = self.state_dir / "identity.json"
            path.write_bytes(data)
            return f"identity_{load_identity_file(path).node_id > 0}"
        if self.kind == "networks":
            (self.state_dir / "networks.json").write_bytes(data)
            return f"networks_{min(len(state.load_joined()), 3)}"
        if self.kind == "roots":
            (self.state_dir / "roots.json").write_bytes(data)
            return f"roots_{min(len(load_root_pins(self.state_dir)), 3)}"
        directory = self.state_dir / "controllers"
        directory.mkdir(exist_ok=True)
        (directory / f"{self.controller_id:010x}.json").write_bytes(data)
        return f"controller_{state.load_controller(self.controller_id) is not None}"

    def strategy(self) -> st.SearchStrategy[bytes]:
        return json_bytes_like(self.seeds)

    def close(self) -> None:
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None


# -- the registry ---------------------------------------------------------------------------------------------


def all_targets() -> list[Target]:
    """Every target, in the order the report lists them (built fresh: targets hold state)."""
    from tests.fuzz.targets_cores import core_targets
    from tests.fuzz.targets_edges import edge_targets
    from tests.fuzz.targets_netcheck import netcheck_targets

    packet_types = [int(t) for t in PacketType]
    message_kinds = [int(k) for k in MessageKind]
    return [
        FunctionTarget("wire.packet", lambda: corpus.outer_packets(), run_packet, (ParseError,),
                       lambda: tagged_binary(packet_types)),
        FunctionTarget("wire.message", lambda: corpus.inner_messages(), run_message, (ParseError,),
                       lambda: tagged_binary(message_kinds)),
        FunctionTarget("wire.bridge", lambda: [f for f in corpus.ethernet_frames() if f[12:14] == bridge.HELLO_ETHERTYPE.to_bytes(2, "big")][:2],
                       run_bridge, (ParseError,)),
        FunctionTarget("wire.stream", corpus.stream_inputs, run_stream, (StreamError,)),
        FunctionTarget("text.parsers", lambda: list(TEXT_SEEDS), run_text_parsers, (), text_strategy),
        FunctionTarget("rules.text", lambda: [text.encode() for text in corpus.RULE_TEXTS], run_rules, (L2meshError,),
                       rules_strategy),
        FunctionTarget("dns.query", dns_queries, run_dns, ()),
        FragmentsTarget(),
        PortmapTarget("natpmp"),
        PortmapTarget("pcp"),
        SignedConfigTarget(),
        SignedDeltaTarget(),
        *(StateFileTarget(kind) for kind in ("identity", "networks", "roots", "controller")),
        *core_targets(),
        *netcheck_targets(),
        *edge_targets(),
    ]

