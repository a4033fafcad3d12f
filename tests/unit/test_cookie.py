"""Handshake screening (l2mesh.crypto.cookie wired into SessionTable): mac1 before any DH, cookies under load."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l2mesh.crypto import noise
from l2mesh.crypto.cookie import (
    COOKIE_LIFETIME_S,
    COOKIE_SECRET_LIFETIME_S,
    UNDER_LOAD_INITIATIONS_PER_S,
    CookieChecker,
    CookieGenerator,
    Screen,
    address_bytes,
)
from l2mesh.session import HandshakeRefused, SessionError
from l2mesh.session_server import SessionClient, SessionServer
from l2mesh.wire.errors import ParseError
from l2mesh.wire.packets import HANDSHAKE_INIT_BYTES, MAC_BYTES, CookieReply, PacketType
from tests.unit.test_session import Node, make_node

HERE = ("198.18.0.1", 9993)
ELSEWHERE = ("198.18.0.2", 9993)


@pytest.fixture
def dh_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the Diffie-Hellman operations done from now on."""
    calls: Counter[str] = Counter()
    real_dh = noise.dh

    def counting_dh(private_key: bytes, public_key: bytes) -> bytes:
        calls["dh"] += 1
        return real_dh(private_key, public_key)

    monkeypatch.setattr(noise, "dh", counting_dh)
    return calls


def loaded(node: Node) -> Node:
    """node's responder considers itself under load from the first initiation on."""
    node.table.cookies = CookieChecker(node.public, under_load_initiations_per_s=0)
    return node


def valid_mac1_junk(responder_public: bytes) -> bytes:
    """What a flooder that knows the responder's public key sends: random Noise, a correct mac1."""
    body = bytes([PacketType.HANDSHAKE_INIT, 0, 0, 0]) + os.urandom(HANDSHAKE_INIT_BYTES - 4 - 2 * MAC_BYTES)
    return CookieGenerator(responder_public).add_macs(body, 0.0)


def refusal(node: Node, packet: bytes, now: float, address=HERE) -> HandshakeRefused:
    with pytest.raises(HandshakeRefused) as refused:
        node.table.handle_initiation(packet, now, source=address[0], address=address)
    return refused.value


# -- mac1 ------------------------------------------------------------------------------------------


def test_wrong_mac1_is_refused_before_any_dh(dh_calls: Counter[str]) -> None:
    a, b, c = make_node(), make_node(), make_node()
    meant_for_c = a.table.session_for(c.public).create_initiation(0.0)
    tampered = bytearray(a.table.session_for(b.public).create_initiation(0.0))
    tampered[10] ^= 1
    dh_calls.clear()
    assert refusal(b, meant_for_c, 0.0).reason == "handshake_bad_mac1"
    assert refusal(b, bytes(tampered), 0.0).reason == "handshake_bad_mac1"
    assert refusal(b, os.urandom(HANDSHAKE_INIT_BYTES), 0.0).reason == "handshake_bad_mac1"
    assert dh_calls["dh"] == 0
    assert b.table.sessions == {}


def test_a_good_mac1_costs_the_dh_it_used_to(dh_calls: Counter[str]) -> None:
    b = make_node()
    with pytest.raises(SessionError):
        b.table.handle_initiation(valid_mac1_junk(b.public), 0.0, source="flooder")
    assert dh_calls["dh"] >= 1  # why, under load, mac2 is needed too


def test_response_with_a_wrong_mac1_is_refused_before_any_dh(dh_calls: Counter[str]) -> None:
    a, b = make_node(), make_node()
    sa = a.table.session_for(b.public)
    response = bytearray(b.table.handle_initiation(sa.create_initiation(0.0), 0.0).response)
    response[-20] ^= 1  # in mac1
    dh_calls.clear()
    with pytest.raises(HandshakeRefused, match="bad_mac1"):
        a.table.handle_response(bytes(response), 0.0)
    assert dh_calls["dh"] == 0
    assert sa.pending is not None  # the genuine response still completes it


# -- under load: cookies ---------------------------------------------------------------------------------


def test_under_load_an_initiation_without_mac2_gets_a_cookie_and_its_retry_gets_through(dh_calls: Counter[str]) -> None:
    a, b = make_node(), loaded(make_node())
    sa = a.table.session_for(b.public)
    first = sa.create_initiation(0.0)
    dh_calls.clear()
    refused = refusal(b, first, 0.0)
    assert refused.reason == "handshake_cookie_sent" and refused.cookie_reply is not None
    assert dh_calls["dh"] == 0
    reply = CookieReply.parse(refused.cookie_reply)
    assert CookieReply.build(reply) == refused.cookie_reply  # the hand-packed reply is the construct's layout
    assert len(refused.cookie_reply) < len(first)  # no amplification towards a spoofed source
    assert a.table.handle_cookie_reply(refused.cookie_reply, 0.1) is sa
    assert reply.receiver_index == sa.pending.local_index
    retry = sa.create_initiation(0.5)
    result = b.table.handle_initiation(retry, 0.5, source=HERE[0], address=HERE)
    a.table.handle_response(result.response, 0.5)
    assert sa.established


def test_a_cookie_is_bound_to_the_address_it_was_sent_to() -> None:
    a, b = make_node(), loaded(make_node())
    sa = a.table.session_for(b.public)
    a.table.handle_cookie_reply(refusal(b, sa.create_initiation(0.0), 0.0, HERE).cookie_reply, 0.0)
    retry = sa.create_initiation(0.5)
    # The same initiation from another address (or port): its mac2 does not match that address's cookie.
    assert refusal(b, retry, 0.5, ELSEWHERE).reason == "handshake_cookie_sent"
    assert refusal(b, retry, 0.5, (HERE[0], HERE[1] + 1)).reason == "handshake_cookie_sent"
    b.table.handle_initiation(retry, 0.5, source=HERE[0], address=HERE)


def test_the_initiator_forgets_a_cookie_after_its_lifetime() -> None:
    a, b = make_node(), loaded(make_node())
    sa = a.table.session_for(b.public)
    a.table.handle_cookie_reply(refusal(b, sa.create_initiation(0.0), 0.0).cookie_reply, 0.0)
    stale = sa.create_initiation(COOKIE_LIFETIME_S)
    assert stale[-MAC_BYTES:] == bytes(MAC_BYTES)  # no mac2 without a fresh cookie
    assert refusal(b, stale, COOKIE_LIFETIME_S).reason == "handshake_cookie_sent"


def test_the_responder_renews_its_cookie_secret() -> None:
    checker = CookieChecker(os.urandom(32), under_load_initiations_per_s=0)
    first = checker._cookie(0.0, HERE)
    assert checker._cookie(COOKIE_SECRET_LIFETIME_S - 1, HERE) == first
    assert checker._cookie(COOKIE_SECRET_LIFETIME_S, HERE) != first


def test_load_is_the_rate_of_good_mac1_initiations_and_passes_when_it_stops() -> None:
    public = os.urandom(32)
    checker = CookieChecker(public)
    packet = valid_mac1_junk(public)
    screens = [checker.screen(packet, 0.001 * i, HERE) for i in range(UNDER_LOAD_INITIATIONS_PER_S + 1)]
    assert set(screens[:-1]) == {Screen.PASS} and screens[-1] is Screen.NEEDS_COOKIE
    assert checker.screen(packet, 1.5, HERE) is Screen.NEEDS_COOKIE  # the last second was busy
    assert not checker.under_load(3.0)
    assert checker.screen(packet, 3.0, HERE) is Screen.PASS
    garbage = os.urandom(HANDSHAKE_INIT_BYTES)
    for i in range(2 * UNDER_LOAD_INITIATIONS_PER_S):
        assert checker.screen(garbage, 3.0 + 0.001 * i, HERE) is Screen.BAD_MAC1
    assert not checker.under_load(3.5)  # garbage costs nothing, so it is no load


def test_a_flood_with_good_mac1_from_many_addresses_costs_no_dh_under_load(dh_calls: Counter[str]) -> None:
    a, b = make_node(), loaded(make_node())
    for i in range(200):
        refused = refusal(b, valid_mac1_junk(b.public), 0.0, (f"198.18.{i // 250}.{i % 250 + 1}", 40000 + i))
        assert refused.reason == "handshake_cookie_sent"
    assert dh_calls["dh"] == 0
    # ...and a real member still gets through, one cookie round trip later.
    sa = a.table.session_for(b.public)
    a.table.handle_cookie_reply(refusal(b, sa.create_initiation(0.0), 0.0).cookie_reply, 0.0)
    b.table.handle_initiation(sa.create_initiation(0.5), 0.5, source=HERE[0], address=HERE)


def test_cookie_replies_are_limited_per_source_and_a_real_member_behind_the_flooded_address_still_gets_one() -> None:
    """A flood from one address gets its burst of replies, then none: each would cost a seal and a send."""
    a, b = make_node(), loaded(make_node())
    reasons = Counter(refusal(b, valid_mac1_junk(b.public), 0.0).reason for _ in range(100))
    limits = b.table.limits
    assert reasons["handshake_cookie_sent"] == limits.cookie_reply_burst_per_source
    assert reasons["handshake_cookie_rate_limited"] == 100 - limits.cookie_reply_burst_per_source
    # Another address is not held back by that flood.
    assert refusal(b, valid_mac1_junk(b.public), 0.0, ELSEWHERE).reason == "handshake_cookie_sent"
    # A real member at the flooded address gets a reply again once the bucket refills (its retries come every 0.5 s).
    sa = a.table.session_for(b.public)
    later = 1.0 / limits.cookie_replies_per_source_per_s
    reply = refusal(b, sa.create_initiation(later), later).cookie_reply
    assert reply is not None
    a.table.handle_cookie_reply(reply, later)
    b.table.handle_initiation(sa.create_initiation(later + 0.5), later + 0.5, source=HERE[0], address=HERE)


# -- hostile cookie replies --------------------------------------------------------------------------


def _pending_with_reply() -> tuple[Node, Node, bytes, bytes]:
    a, b = make_node(), loaded(make_node())
    sa = a.table.session_for(b.public)
    init = sa.create_initiation(0.0)
    return a, b, init, refusal(b, init, 0.0).cookie_reply


def test_a_cookie_reply_is_taken_once() -> None:
    a, _, _, reply = _pending_with_reply()
    a.table.handle_cookie_reply(reply, 0.0)
    with pytest.raises(SessionError, match="no pending"):
        a.table.handle_cookie_reply(reply, 0.1)


def test_cookie_replies_that_do_not_open_are_refused_and_change_nothing() -> None:
    a, b, _, reply = _pending_with_reply()
    session = a.table.sessions[b.public]
    parsed = CookieReply.parse(reply)
    tampered = bytearray(reply)
    tampered[-1] ^= 1
    wrong_key = CookieReply.build(
        {"receiver_index": parsed.receiver_index, "nonce": parsed.nonce, "encrypted_cookie": os.urandom(32)}
    )
    for hostile in (bytes(tampered), wrong_key):
        with pytest.raises(SessionError, match="does not open"):
            a.table.handle_cookie_reply(hostile, 0.0)
    unknown_index = CookieReply.build({**parsed, "receiver_index": parsed.receiver_index ^ 1})
    with pytest.raises(SessionError, match="no pending"):
        a.table.handle_cookie_reply(unknown_index, 0.0)
    with pytest.raises(ParseError):
        a.table.handle_cookie_reply(reply + b"x", 0.0)
    assert session.create_initiation(0.5)[-MAC_BYTES:] == bytes(MAC_BYTES)  # no cookie was stored
    # A reply bound to an older initiation's mac1 does not open for the new one either.
    with pytest.raises(SessionError):
        a.table.handle_cookie_reply(reply, 0.5)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_cookie_replies_or_initiations_are_refused_cleanly(data: bytes) -> None:
    a, _, _, _ = _pending_with_reply()
    for packet in (data, bytes([PacketType.COOKIE_REPLY]) + data):
        with pytest.raises((SessionError, ParseError)):
            a.table.handle_cookie_reply(packet, 0.0)
        with pytest.raises(HandshakeRefused):
            a.table.handle_initiation(packet, 0.0, source="fuzz")


def test_address_bytes_pack_endpoints_and_keep_other_keys_apart() -> None:
    assert address_bytes(("198.18.0.1", 1)) == bytes([198, 18, 0, 1, 0, 1])
    assert len(address_bytes(("2001:db8::1", 1))) == 18
    assert address_bytes(("relay", 5)) != address_bytes(("relay", 6))
    assert address_bytes(("::ffff:198.18.0.1", 1)) != address_bytes(("198.18.0.1", 1))
    for not_an_address in (("1.2.3.400", 1), ("1.2.3.x", 1), ("1.2.3.4", 70000)):
        assert address_bytes(not_an_address) == repr(not_an_address).encode()


# -- servers (controller, root) --------------------------------------------------------------------


def test_a_server_counts_refusals_by_reason_and_answers_with_cookies_under_load() -> None:
    drops: Counter[str] = Counter()
    server_node = make_node()
    server = SessionServer(server_node.private, drops, lambda session, endpoint, now: SessionClient(session, endpoint))
    assert server.handshake_initiation(memoryview(os.urandom(HANDSHAKE_INIT_BYTES)), HERE, 0.0) is None
    assert drops["handshake_bad_mac1"] == 1
    server.table.cookies = CookieChecker(server.table.static_public, under_load_initiations_per_s=0)
    a = make_node()
    sa = a.table.session_for(server_node.public)
    reply = server.handshake_initiation(memoryview(sa.create_initiation(0.0)), HERE, 0.0)
    assert reply is not None and reply[0] == PacketType.COOKIE_REPLY and drops["handshake_cookie_sent"] == 1
    a.table.handle_cookie_reply(reply, 0.0)
    response = server.handshake_initiation(memoryview(sa.create_initiation(0.5)), HERE, 0.5)
    assert response is not None and response[0] == PacketType.HANDSHAKE_RESPONSE
