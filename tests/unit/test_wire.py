"""Property tests for l2mesh.wire: every packet and message round-trips, hostile bytes raise only ParseError."""

from __future__ import annotations

import ipaddress
import struct

import construct as c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2mesh.switch.loops import build_hello, build_topology_change, parse_hello, parse_topology_change
from l2mesh.wire import ParseError
from l2mesh.wire.bridge import HELLO_ETHERTYPE, HELLO_MAC, BridgeHello
from l2mesh.wire.codec import parse_message, parse_packet
from l2mesh.wire.errors import parse_exact
from l2mesh.wire.messages import (
    FRAME_HEADER,
    FRAME_HEADER_BYTES,
    MESSAGES,
    Frame,
    MessageKind,
    NetconfStatus,
)
from l2mesh.wire.packets import (
    FRAGMENT_HEADER,
    FRAGMENT_HEADER_BYTES,
    HANDSHAKE_INIT_BYTES,
    HANDSHAKE_RESPONSE_BYTES,
    PACKETS,
    RELAY_HEADER,
    RELAY_HEADER_BYTES,
    TRANSPORT_HEADER,
    TRANSPORT_HEADER_BYTES,
    Fragment,
    PacketType,
    RelayEnvelope,
    Transport,
    TransportHeader,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u40 = st.integers(0, 2**40 - 1)
u64 = st.integers(0, 2**64 - 1)


def fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


def short_text() -> st.SearchStrategy[str]:
    # PascalString(Int8ub, "utf8"): at most 255 encoded bytes.
    return st.text(max_size=80).filter(lambda s: len(s.encode()) <= 255)


endpoints = st.tuples(st.ip_addresses().map(str), u16)

PACKET_FIELDS: dict[PacketType, st.SearchStrategy[dict]] = {
    PacketType.HANDSHAKE_INIT: st.fixed_dictionaries(
        {
            "sender_index": u32,
            "ephemeral": fixed(32),
            "encrypted_static": fixed(48),
            "encrypted_timestamp": fixed(28),
            "mac1": fixed(16),
            "mac2": fixed(16),
        }
    ),
    PacketType.HANDSHAKE_RESPONSE: st.fixed_dictionaries(
        {
            "sender_index": u32,
            "receiver_index": u32,
            "ephemeral": fixed(32),
            "encrypted_empty": fixed(16),
            "mac1": fixed(16),
            "mac2": fixed(16),
        }
    ),
    PacketType.COOKIE_REPLY: st.fixed_dictionaries(
        {"receiver_index": u32, "nonce": fixed(24), "encrypted_cookie": fixed(32)}
    ),
    PacketType.TRANSPORT: st.fixed_dictionaries(
        {"receiver_index": u32, "counter": u64, "ciphertext": st.binary(min_size=16, max_size=200)}
    ),
    PacketType.FRAGMENT: st.fixed_dictionaries(
        {"index": u8, "count": u8, "receiver_index": u32, "counter": u64, "chunk": st.binary(max_size=200)}
    ),
    PacketType.RELAY: st.fixed_dictionaries(
        {"hops": u8, "destination": u40, "source": u40, "packet": st.binary(max_size=200)}
    ),
    PacketType.IDENTITY_REQUEST: st.fixed_dictionaries({"node_id": u40}),
    PacketType.IDENTITY_RESPONSE: st.fixed_dictionaries({"x25519": fixed(32), "ed25519": fixed(32)}),
}

MESSAGE_FIELDS: dict[MessageKind, st.SearchStrategy[dict]] = {
    MessageKind.FRAME: st.fixed_dictionaries({"network_id": u64, "frame": st.binary(min_size=14, max_size=200)}),
    MessageKind.FRAME_OFFLOAD: st.fixed_dictionaries(
        {
            "network_id": u64,
            "vnet_flags": st.integers(0, 255),
            "gso_type": st.integers(0, 255),
            "header_bytes": u16,
            "gso_size": u16,
            "checksum_start": u16,
            "checksum_offset": u16,
            "frame": st.binary(min_size=14, max_size=200),
        }
    ),
    MessageKind.NETCONF_REQUEST: st.fixed_dictionaries(
        {"network_id": u64, "have_revision": u64, "ed25519": fixed(32), "proof": fixed(64), "client_version": short_text()}
    ),
    MessageKind.NETCONF_RESPONSE: st.fixed_dictionaries(
        {
            "network_id": u64,
            "status": st.sampled_from([s.name for s in NetconfStatus]),
            "revision": u64,
            "signed_config": st.binary(max_size=300),
        }
    ).flatmap(
        lambda d: st.integers(1, 512).flatmap(
            lambda count: st.integers(0, count - 1).map(lambda index: {**d, "chunk_index": index, "chunk_count": count})
        )
    ),
    MessageKind.MULTICAST_SUBSCRIPTIONS: st.fixed_dictionaries(
        {
            "network_id": u64,
            "ttl_s": u16,
            "complete": st.booleans(),
            "groups": st.lists(st.fixed_dictionaries({"mac": fixed(6), "adi": u32}), max_size=12),
        }
    ),
    MessageKind.ENDPOINT_HINTS: st.fixed_dictionaries(
        {"node_id": u40, "punch": st.booleans(), "endpoints": st.lists(endpoints, max_size=8)}
    ),
    MessageKind.PATH_PROBE: st.fixed_dictionaries({"probe_id": u64}),
    MessageKind.PATH_PROBE_REPLY: st.fixed_dictionaries({"probe_id": u64, "observed": endpoints}),
    MessageKind.KEEPALIVE: st.fixed_dictionaries({}),
    MessageKind.ROOT_REGISTER: st.fixed_dictionaries(
        {"ed25519": fixed(32), "proof": fixed(64), "local_endpoints": st.lists(endpoints, max_size=8)}
    ),
    MessageKind.ROOT_REGISTERED: st.fixed_dictionaries({"ttl_s": u16, "observed": endpoints}),
    MessageKind.ROOT_LOOKUP: st.fixed_dictionaries({"node_id": u40}),
    MessageKind.ROOT_LOOKUP_REPLY: st.fixed_dictionaries(
        {
            "node_id": u40,
            "registered": st.booleans(),
            "x25519": fixed(32),
            "ed25519": fixed(32),
            "endpoints": st.lists(endpoints, max_size=16),
        }
    ),
    MessageKind.MULTICAST_LIKE: st.fixed_dictionaries(
        {
            "network_id": u64,
            "ttl_s": u16,
            "complete": st.booleans(),
            "groups": st.lists(st.fixed_dictionaries({"mac": fixed(6), "adi": u32}), max_size=12),
        }
    ),
    MessageKind.MULTICAST_GATHER: st.fixed_dictionaries(
        {"network_id": u64, "group": st.fixed_dictionaries({"mac": fixed(6), "adi": u32}), "gather_id": u32, "limit": u32}
    ),
    MessageKind.MULTICAST_GATHER_REPLY: st.fixed_dictionaries(
        {
            "network_id": u64,
            "group": st.fixed_dictionaries({"mac": fixed(6), "adi": u32}),
            "gather_id": u32,
            "subscribers": st.lists(u40, max_size=20),
        }
    ).flatmap(
        lambda d: st.integers(1, 4096).flatmap(
            lambda count: st.integers(0, count - 1).map(lambda index: {**d, "page_index": index, "page_count": count})
        )
    ),
    MessageKind.MULTICAST_SUBSCRIBERS_CHANGED: st.fixed_dictionaries(
        {
            "network_id": u64,
            "group": st.fixed_dictionaries({"mac": fixed(6), "adi": u32}),
            "added": st.lists(u40, max_size=20),
            "removed": st.lists(u40, max_size=20),
        }
    ),
    MessageKind.NETCONF_DELTA: st.fixed_dictionaries(
        {"network_id": u64, "from_revision": u64, "to_revision": u64, "signed_delta": st.binary(max_size=300)}
    ),
}

# Constructs ending in GreedyBytes: name of the tail field and the shortest valid encoding.
GREEDY_PACKETS = {
    PacketType.TRANSPORT: ("ciphertext", TRANSPORT_HEADER_BYTES + 16),
    PacketType.FRAGMENT: ("chunk", FRAGMENT_HEADER_BYTES),
    PacketType.RELAY: ("packet", 12),
}
GREEDY_MESSAGES = {
    MessageKind.FRAME: ("frame", FRAME_HEADER_BYTES + 14),
    MessageKind.FRAME_OFFLOAD: ("frame", FRAME_HEADER_BYTES + 10 + 14),
}


def _top_level_subcons(definition: c.Construct) -> list[c.Construct]:
    inner = definition
    while isinstance(inner, c.Renamed):
        inner = inner.subcon
    assert isinstance(inner, c.Struct)
    return list(inner.subcons)


def _is_terminated(definition: c.Construct) -> bool:
    return any(sub is c.Terminated for sub in _top_level_subcons(definition))


def _greedy_tail(definition: c.Construct) -> str | None:
    for sub in _top_level_subcons(definition):
        if isinstance(sub, c.Renamed) and sub.subcon is c.GreedyBytes:
            return sub.name
    return None


ALL = [("packet", t, PACKETS[t], PACKET_FIELDS) for t in PacketType] + [
    ("message", k, MESSAGES[k], MESSAGE_FIELDS) for k in MessageKind
]
ALL_IDS = [f"{kind}-{tag.name}" for kind, tag, _, _ in ALL]


def _parse(kind: str, data: bytes):
    return parse_packet(data) if kind == "packet" else parse_message(data)


def _greedy(kind: str, tag) -> tuple[str, int] | None:
    return (GREEDY_PACKETS if kind == "packet" else GREEDY_MESSAGES).get(tag)


def _same_value(field: str, parsed, expected) -> bool:
    if field == "endpoints":
        return [(ipaddress.ip_address(h), p) for h, p in parsed] == [
            (ipaddress.ip_address(h), p) for h, p in expected
        ]
    if field == "observed":
        return (ipaddress.ip_address(parsed[0]), parsed[1]) == (ipaddress.ip_address(expected[0]), expected[1])
    if field == "groups":
        return [dict(mac=g.mac, adi=g.adi) for g in parsed] == expected
    return parsed == expected


# -- the tables above cover exactly what the protocol defines --------------


def test_handshake_packets_have_the_sizes_the_session_layer_checks() -> None:
    assert len(PACKETS[PacketType.HANDSHAKE_INIT].build(_minimal_fields("packet", PacketType.HANDSHAKE_INIT))) == HANDSHAKE_INIT_BYTES
    response = _minimal_fields("packet", PacketType.HANDSHAKE_RESPONSE)
    assert len(PACKETS[PacketType.HANDSHAKE_RESPONSE].build(response)) == HANDSHAKE_RESPONSE_BYTES


def test_field_strategies_cover_every_packet_and_message() -> None:
    assert set(PACKET_FIELDS) == set(PACKETS) == set(PacketType)
    assert set(MESSAGE_FIELDS) == set(MESSAGES) == set(MessageKind)


def test_every_construct_is_either_terminated_or_ends_in_a_greedy_tail() -> None:
    for kind, tag, definition, _ in ALL:
        greedy = _greedy(kind, tag)
        if greedy is None:
            assert _is_terminated(definition), f"{tag!r} neither Terminated nor greedy"
            assert _greedy_tail(definition) is None
        else:
            assert not _is_terminated(definition)
            assert _greedy_tail(definition) == greedy[0]


def test_packet_and_message_tables_are_keyed_by_their_leading_byte() -> None:
    for kind, tag, definition, strategies in ALL:
        encoded = definition.build(_minimal_fields(kind, tag))
        assert encoded[0] == tag
        parsed_tag, _ = _parse(kind, encoded)
        assert parsed_tag == tag


def _minimal_fields(kind: str, tag) -> dict:
    """A deterministic valid field set (packet types and message kinds share small integers: two tables)."""
    packets = {
        PacketType.HANDSHAKE_INIT: dict(
            sender_index=1, ephemeral=b"e" * 32, encrypted_static=b"s" * 48, encrypted_timestamp=b"t" * 28, mac1=b"m" * 16, mac2=b"n" * 16
        ),
        PacketType.HANDSHAKE_RESPONSE: dict(
            sender_index=1, receiver_index=2, ephemeral=b"e" * 32, encrypted_empty=b"x" * 16, mac1=b"m" * 16, mac2=b"n" * 16
        ),
        PacketType.COOKIE_REPLY: dict(receiver_index=1, nonce=b"n" * 24, encrypted_cookie=b"c" * 32),
        PacketType.TRANSPORT: dict(receiver_index=1, counter=2, ciphertext=b"c" * 16),
        PacketType.FRAGMENT: dict(index=0, count=2, receiver_index=1, counter=2, chunk=b"abc"),
        PacketType.RELAY: dict(hops=0, destination=1, source=2, packet=b"p"),
        PacketType.IDENTITY_REQUEST: dict(node_id=1),
        PacketType.IDENTITY_RESPONSE: dict(x25519=b"x" * 32, ed25519=b"d" * 32),
    }
    messages = {
        MessageKind.FRAME: dict(network_id=1, frame=b"f" * 14),
        MessageKind.NETCONF_REQUEST: dict(network_id=1, have_revision=0, ed25519=bytes(32), proof=bytes(64), client_version="v"),
        MessageKind.NETCONF_RESPONSE: dict(
            network_id=1, status="OK", revision=1, chunk_index=0, chunk_count=1, signed_config=b"sig"
        ),
        MessageKind.MULTICAST_SUBSCRIPTIONS: dict(network_id=1, ttl_s=60, complete=True, groups=[dict(mac=b"\x01" * 6, adi=0)]),
        MessageKind.ENDPOINT_HINTS: dict(node_id=1, punch=False, endpoints=[("198.18.250.1", 9993), ("2001:db8::1", 1)]),
        MessageKind.PATH_PROBE: dict(probe_id=7),
        MessageKind.PATH_PROBE_REPLY: dict(probe_id=7, observed=("198.18.250.7", 4242)),
        MessageKind.KEEPALIVE: dict(),
        MessageKind.FRAME_OFFLOAD: dict(
            network_id=1, vnet_flags=1, gso_type=1, header_bytes=54, gso_size=2748, checksum_start=34,
            checksum_offset=16, frame=b"f" * 14,
        ),
        MessageKind.ROOT_REGISTER: dict(ed25519=bytes(32), proof=bytes(64), local_endpoints=[("198.19.1.2", 9993)]),
        MessageKind.ROOT_REGISTERED: dict(ttl_s=60, observed=("198.18.1.2", 9993)),
        MessageKind.ROOT_LOOKUP: dict(node_id=1),
        MessageKind.ROOT_LOOKUP_REPLY: dict(
            node_id=1, registered=True, x25519=bytes(32), ed25519=bytes(32), endpoints=[("198.18.1.2", 9993)]
        ),
        MessageKind.MULTICAST_LIKE: dict(network_id=1, ttl_s=60, complete=True, groups=[dict(mac=b"\x01" * 6, adi=0)]),
        MessageKind.MULTICAST_GATHER: dict(network_id=1, group=dict(mac=b"\x01" * 6, adi=0), gather_id=3, limit=0),
        MessageKind.MULTICAST_GATHER_REPLY: dict(
            network_id=1, group=dict(mac=b"\x01" * 6, adi=0), gather_id=3, page_index=0, page_count=1, subscribers=[2, 3]
        ),
        MessageKind.MULTICAST_SUBSCRIBERS_CHANGED: dict(
            network_id=1, group=dict(mac=b"\x01" * 6, adi=0), added=[2], removed=[3]
        ),
        MessageKind.NETCONF_DELTA: dict(network_id=1, from_revision=3, to_revision=4, signed_delta=b"sig"),
    }
    return (packets if kind == "packet" else messages)[tag]


# -- round trips ------------------------------------------------------------


@pytest.mark.parametrize(("kind", "tag", "definition", "strategies"), ALL, ids=ALL_IDS)
@SETTINGS
@given(data=st.data())
def test_build_parse_build_round_trips_fields_and_bytes(kind, tag, definition, strategies, data) -> None:
    fields = data.draw(strategies[tag])
    encoded = definition.build(fields)
    parsed_tag, parsed = _parse(kind, encoded)
    assert parsed_tag == tag
    for name, value in fields.items():
        assert _same_value(name, parsed[name], value), name
    assert definition.build(parsed) == encoded


# -- truncation and extension ---------------------------------------------


@pytest.mark.parametrize(("kind", "tag", "definition", "strategies"), ALL, ids=ALL_IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_truncation_raises_parse_error_or_is_a_valid_shorter_greedy_message(
    kind, tag, definition, strategies, data
) -> None:
    fields = data.draw(strategies[tag])
    encoded = definition.build(fields)
    greedy = _greedy(kind, tag)
    for length in range(len(encoded)):
        prefix = encoded[:length]
        if greedy is not None and length >= greedy[1]:
            # Cutting a GreedyBytes tail leaves a shorter but valid encoding.
            parsed_tag, parsed = _parse(kind, prefix)
            assert parsed_tag == tag
            tail_name = greedy[0]
            assert parsed[tail_name] == fields[tail_name][: length - (len(encoded) - len(fields[tail_name]))]
        else:
            with pytest.raises(ParseError):
                _parse(kind, prefix)


TERMINATED = [entry for entry in ALL if _greedy(entry[0], entry[1]) is None]
GREEDY = [entry for entry in ALL if _greedy(entry[0], entry[1]) is not None]


@pytest.mark.parametrize(
    ("kind", "tag", "definition", "strategies"), TERMINATED, ids=[f"{k}-{t.name}" for k, t, _, _ in TERMINATED]
)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), extra=st.binary(min_size=1, max_size=64))
def test_appending_bytes_to_a_terminated_message_raises_parse_error(kind, tag, definition, strategies, data, extra) -> None:
    encoded = definition.build(data.draw(strategies[tag]))
    with pytest.raises(ParseError):
        _parse(kind, encoded + extra)


@pytest.mark.parametrize(
    ("kind", "tag", "definition", "strategies"), GREEDY, ids=[f"{k}-{t.name}" for k, t, _, _ in GREEDY]
)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), extra=st.binary(min_size=1, max_size=64))
def test_appending_bytes_to_a_greedy_message_extends_its_tail(kind, tag, definition, strategies, data, extra) -> None:
    fields = data.draw(strategies[tag])
    tail_name, _ = _greedy(kind, tag)
    _, parsed = _parse(kind, definition.build(fields) + extra)
    assert parsed[tail_name] == fields[tail_name] + extra


def test_terminated_and_greedy_lists_cover_all_constructs() -> None:
    assert len(TERMINATED) == 21
    assert len(GREEDY) == 5


# -- hostile bytes ----------------------------------------------------------


def _only_parse_error(parse, data: bytes) -> None:
    try:
        parse(data)
    except ParseError:
        pass


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes_to_parse_packet_raise_only_parse_error(data: bytes) -> None:
    _only_parse_error(parse_packet, data)


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes_to_parse_message_raise_only_parse_error(data: bytes) -> None:
    _only_parse_error(parse_message, data)


@SETTINGS
@given(tag=st.sampled_from(list(PacketType)), rest=st.binary(max_size=300))
def test_random_bytes_after_a_valid_packet_type_raise_only_parse_error(tag, rest: bytes) -> None:
    _only_parse_error(parse_packet, bytes([tag]) + rest)


@SETTINGS
@given(tag=st.sampled_from(list(MessageKind)), rest=st.binary(max_size=300))
def test_random_bytes_after_a_valid_message_kind_raise_only_parse_error(tag, rest: bytes) -> None:
    _only_parse_error(parse_message, bytes([tag]) + rest)


@SETTINGS
@given(
    tag=st.sampled_from(
        [MessageKind.ENDPOINT_HINTS, MessageKind.PATH_PROBE_REPLY, MessageKind.NETCONF_REQUEST, MessageKind.NETCONF_RESPONSE]
    ),
    data=st.data(),
    position=st.integers(0, 10_000),
    value=u8,
)
def test_corrupting_one_byte_of_a_structured_message_raises_only_parse_error(tag, data, position, value) -> None:
    # Hits the nested decoders (endpoint family/address, utf-8 strings, enums).
    encoded = bytearray(MESSAGES[tag].build(data.draw(MESSAGE_FIELDS[tag])))
    encoded[position % len(encoded)] = value
    _only_parse_error(parse_message, bytes(encoded))


def test_empty_input_and_unknown_tags_raise_parse_error() -> None:
    for parse in (parse_packet, parse_message):
        with pytest.raises(ParseError):
            parse(b"")
        with pytest.raises(ParseError):
            parse(b"\x00" + b"\x00" * 40)
        with pytest.raises(ParseError):
            parse(b"\xff" + b"\x00" * 40)


def test_invalid_utf8_and_bad_endpoint_family_raise_parse_error() -> None:
    request_head = bytes([MessageKind.NETCONF_REQUEST]) + (1).to_bytes(8, "big") + bytes(8 + 32 + 64)
    assert parse_message(request_head + bytes([2]) + b"ok")[1].client_version == "ok"
    bad_utf8 = request_head + bytes([2]) + b"\xff\xfe"
    with pytest.raises(ParseError):
        parse_message(bad_utf8)
    bad_family = bytes([MessageKind.PATH_PROBE_REPLY]) + (7).to_bytes(8, "big") + bytes([5]) + b"\0" * 6
    with pytest.raises(ParseError):
        parse_message(bad_family)


def test_message_kinds_2_and_10_are_unknown_since_their_unsent_messages_were_removed() -> None:
    for kind in (2, 10):
        with pytest.raises(ParseError, match=f"unknown message type {kind}"):
            parse_message(bytes([kind]) + bytes(40))


def test_parse_accepts_memoryview() -> None:
    encoded = Transport.build(dict(receiver_index=9, counter=10, ciphertext=b"t" * 16))
    tag, parsed = parse_packet(memoryview(encoded))
    assert tag is PacketType.TRANSPORT and parsed.receiver_index == 9 and parsed.counter == 10
    assert parse_exact(Transport, memoryview(encoded)).ciphertext == b"t" * 16


# -- hot-path structs are byte-identical to the constructs -------------------


def test_hot_path_struct_sizes_match_constructs() -> None:
    assert TRANSPORT_HEADER.size == TRANSPORT_HEADER_BYTES == TransportHeader.sizeof() == 16
    assert FRAGMENT_HEADER.size == FRAGMENT_HEADER_BYTES == 16
    assert FRAME_HEADER.size == FRAME_HEADER_BYTES == 9
    assert RELAY_HEADER.size == RELAY_HEADER_BYTES == len(RelayEnvelope.build(dict(hops=0, destination=0, source=0, packet=b""))) == 12


@SETTINGS
@given(receiver_index=u32, counter=u64, ciphertext=st.binary(min_size=16, max_size=64))
def test_transport_header_struct_is_byte_identical_to_construct(receiver_index, counter, ciphertext) -> None:
    packed = TRANSPORT_HEADER.pack(PacketType.TRANSPORT, receiver_index, counter)
    assert packed == TransportHeader.build(dict(receiver_index=receiver_index, counter=counter))
    whole = Transport.build(dict(receiver_index=receiver_index, counter=counter, ciphertext=ciphertext))
    assert whole == packed + ciphertext
    assert TRANSPORT_HEADER.unpack_from(whole) == (PacketType.TRANSPORT, receiver_index, counter)
    parsed = TransportHeader.parse(packed)
    assert (parsed.type, parsed.receiver_index, parsed.counter) == (PacketType.TRANSPORT, receiver_index, counter)
    parsed_whole = Transport.parse(packed + ciphertext)
    assert (parsed_whole.receiver_index, parsed_whole.counter, parsed_whole.ciphertext) == (
        receiver_index,
        counter,
        ciphertext,
    )


@SETTINGS
@given(index=u8, count=u8, receiver_index=u32, counter=u64, chunk=st.binary(max_size=64))
def test_fragment_header_struct_is_byte_identical_to_construct(index, count, receiver_index, counter, chunk) -> None:
    packed = FRAGMENT_HEADER.pack(PacketType.FRAGMENT, index, count, receiver_index, counter)
    built = Fragment.build(dict(index=index, count=count, receiver_index=receiver_index, counter=counter, chunk=chunk))
    assert built == packed + chunk
    assert FRAGMENT_HEADER.unpack_from(built) == (PacketType.FRAGMENT, index, count, receiver_index, counter)
    parsed = Fragment.parse(packed + chunk)
    assert (parsed.index, parsed.count, parsed.receiver_index, parsed.counter, parsed.chunk) == (
        index,
        count,
        receiver_index,
        counter,
        chunk,
    )


@SETTINGS
@given(hops=u8, destination=u40, source=u40, packet=st.binary(max_size=64))
def test_relay_header_struct_is_byte_identical_to_construct(hops: int, destination: int, source: int, packet: bytes) -> None:
    packed = RELAY_HEADER.pack(PacketType.RELAY, hops, destination.to_bytes(5, "big"), source.to_bytes(5, "big"))
    built = RelayEnvelope.build(dict(hops=hops, destination=destination, source=source, packet=packet))
    assert built == packed + packet
    assert RELAY_HEADER.unpack_from(built) == (PacketType.RELAY, hops, destination.to_bytes(5, "big"), source.to_bytes(5, "big"))
    parsed = RelayEnvelope.parse(packed + packet)
    assert (parsed.hops, parsed.destination, parsed.source, parsed.packet) == (hops, destination, source, packet)


@SETTINGS
@given(network_id=u64, frame=st.binary(min_size=14, max_size=64))
def test_frame_header_struct_is_byte_identical_to_construct(network_id, frame) -> None:
    packed = FRAME_HEADER.pack(MessageKind.FRAME, network_id)
    built = Frame.build(dict(network_id=network_id, frame=frame))
    assert built == packed + frame
    assert FRAME_HEADER.unpack_from(built) == (MessageKind.FRAME, network_id)
    parsed = Frame.parse(packed + frame)
    assert (parsed.network_id, parsed.frame) == (network_id, frame)


@SETTINGS
@given(network_id=u64, vnet=st.binary(min_size=10, max_size=10), frame=st.binary(min_size=14, max_size=100))
def test_offload_frame_fast_header_plus_raw_virtio_header_is_byte_identical_to_construct(
    network_id: int, vnet: bytes, frame: bytes
) -> None:
    flags, gso_type, header_bytes, gso_size, start, offset = struct.unpack("<BBHHHH", vnet)
    built = MESSAGES[MessageKind.FRAME_OFFLOAD].build(
        dict(network_id=network_id, vnet_flags=flags, gso_type=gso_type, header_bytes=header_bytes,
             gso_size=gso_size, checksum_start=start, checksum_offset=offset, frame=frame)
    )
    assert FRAME_HEADER.pack(MessageKind.FRAME_OFFLOAD, network_id) + vnet + frame == built


# -- bridge frames (loop protection): construct definitions, same bytes as every earlier node's ---------

# The layout nodes have always sent (hand-packed before wire/bridge.py existed):
# destination, source, ethertype, network id, node id, then zeros to 60 bytes.
LEGACY_HELLO_HEADER = struct.Struct(">6s6sH8s5s")
macs = fixed(6)


def _legacy_padded(frame: bytes) -> bytes:
    return frame + bytes(max(0, 60 - len(frame)))


def test_hello_bytes_are_the_documented_layout() -> None:
    built = build_hello(bytes.fromhex("0a0b0c0d0e0f"), 0x0123456789ABCDEF, 0x1122334455)
    assert built.hex() == "034c326d6c70" "0a0b0c0d0e0f" "88b5" "0123456789abcdef" "1122334455" + "00" * 33
    assert len(built) == 60


@SETTINGS
@given(source=macs, network_id=u64, node_id=u40)
def test_hello_construct_is_byte_identical_to_the_legacy_layout_and_parses_back(source: bytes, network_id: int, node_id: int) -> None:
    legacy = _legacy_padded(
        LEGACY_HELLO_HEADER.pack(HELLO_MAC, source, HELLO_ETHERTYPE, network_id.to_bytes(8, "big"), node_id.to_bytes(5, "big"))
    )
    built = build_hello(source, network_id, node_id)
    assert built == legacy == BridgeHello.build(dict(source=source, network_id=network_id, node_id=node_id))
    assert parse_hello(legacy) == (network_id, node_id)
    assert parse_hello(memoryview(bytearray(legacy))) == (network_id, node_id)
    parsed = BridgeHello.parse(legacy)
    assert (parsed.source, parsed.network_id, parsed.node_id) == (source, network_id, node_id)


@SETTINGS
@given(source=macs, network_id=u64, node_id=u40, bridges=st.lists(u40, max_size=300))
def test_topology_change_construct_is_byte_identical_to_the_legacy_layout_and_parses_back(
    source: bytes, network_id: int, node_id: int, bridges: list[int]
) -> None:
    sent = bridges[:255]
    header = LEGACY_HELLO_HEADER.pack(HELLO_MAC, source, HELLO_ETHERTYPE, network_id.to_bytes(8, "big"), node_id.to_bytes(5, "big"))
    legacy = _legacy_padded(header + bytes([len(sent)]) + b"".join(n.to_bytes(5, "big") for n in sent))
    built = build_topology_change(source, network_id, node_id, bridges)
    assert built == legacy
    assert parse_topology_change(legacy) == (network_id, [node_id, *sent])
    # Every topology change starts like a hello; receivers tell them apart by where they arrive.
    assert parse_hello(built) == (network_id, node_id)


def test_hello_read_as_topology_change_names_only_its_sender() -> None:
    assert parse_topology_change(build_hello(b"\x02" * 6, 7, 9)) == (7, [9])


@SETTINGS
@given(source=macs, network_id=u64, node_id=u40, extra=st.binary(max_size=64))
def test_bytes_after_a_bridge_frame_are_ignored_and_a_truncated_one_is_refused(
    source: bytes, network_id: int, node_id: int, extra: bytes
) -> None:
    hello = build_hello(source, network_id, node_id)
    assert parse_hello(hello + extra) == (network_id, node_id)
    assert parse_hello(hello[:26]) is None
    change = build_topology_change(source, network_id, node_id, [1, 2, 3])
    assert parse_topology_change(change + extra) == (network_id, [node_id, 1, 2, 3])
    assert parse_topology_change(change[: 27 + 1 + 5 * 3 - 1]) is None


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_to_bridge_frame_parsers_give_none_or_a_result_never_an_exception(data: bytes) -> None:
    for frame in (data, HELLO_MAC + data[:6] + HELLO_ETHERTYPE.to_bytes(2, "big") + data[6:]):
        hello = parse_hello(frame)
        assert hello is None or len(hello) == 2
        change = parse_topology_change(frame)
        assert change is None or (change[1] and len(change[1]) <= 256)


def test_bridge_frames_of_another_ethertype_or_destination_are_not_bridge_frames() -> None:
    hello = bytearray(build_hello(b"\x02" * 6, 7, 9))
    other_type = bytes(hello[:12]) + b"\x08\x00" + bytes(hello[14:])
    other_destination = b"\x01\x00\x5e\x00\x00\x01" + bytes(hello[6:])
    for frame in (other_type, other_destination):
        assert parse_hello(frame) is None and parse_topology_change(frame) is None
