"""l2mesh.controller.issuing: who gets a config, what it lists, and how it is signed and cut into chunks."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator

import pytest

from l2mesh.controller import issuing
from l2mesh.controller.clients import Client
from l2mesh.controller.issuing import Issuer
from l2mesh.controller.model import Member, Network
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import is_reserved_node_id, make_network_id
from l2mesh.netconf import verify_signed_config
from l2mesh.session import SessionTable
from l2mesh.wire.messages import NetconfResponse

CONTROLLER = Identity.generate()
NETWORK = Network(make_network_id(CONTROLLER.node_id, 1), "lab", revision=7)
WALL_S = 1_900_000_000.0


def issuer() -> Issuer:
    return Issuer(CONTROLLER, lambda: WALL_S, Counter(), Counter())


def client_of(identity: Identity, endpoint: tuple[str, int] = ("198.18.1.2", 9993)) -> Client:
    session = SessionTable(CONTROLLER.x25519_private).session_for(identity.x25519_public)
    return Client(session, endpoint, identity.node_id, identity.public, networks={NETWORK.network_id})


def member_of(identity: Identity | PublicIdentity, node_id: int, **fields: object) -> Member:
    public = identity.public if isinstance(identity, Identity) else identity
    return Member(NETWORK.network_id, node_id, public, **fields)  # type: ignore[arg-type]


def random_identities() -> Iterator[PublicIdentity]:
    """Keys need not be valid points for a config; their ids must not be reserved ones."""
    while True:
        identity = PublicIdentity(os.urandom(32), os.urandom(32))
        if not is_reserved_node_id(identity.node_id):
            yield identity


def signed_config(messages: list[bytes]) -> bytes:
    chunks = [NetconfResponse.parse(m) for m in messages]
    assert [c.chunk_index for c in chunks] == list(range(len(chunks))) and {c.chunk_count for c in chunks} == {len(chunks)}
    return b"".join(c.signed_config for c in chunks)


def test_a_config_lists_authorized_members_with_keys_and_the_best_endpoints_known() -> None:
    me, online, offline = Identity.generate(), Identity.generate(), Identity.generate()
    members = [
        member_of(me, me.node_id, authorized=True, ips=("10.147.17.1/24",)),
        member_of(online, online.node_id, authorized=True, endpoint="198.18.9.9:1"),
        member_of(offline, offline.node_id, authorized=True, endpoint="198.18.3.2:9993"),
        member_of(Identity.generate(), 0x1000000001),  # not authorized
        Member(NETWORK.network_id, 0x1000000002, None, authorized=True),  # pre-authorized, no keys yet
    ]
    live = client_of(online, ("198.19.5.5", 4000))
    live.local_endpoints = [("198.19.5.5", 4000), ("10.0.0.5", 9993)]
    config = issuer().build_config(NETWORK, members, me.node_id, {online.node_id: live})
    assert [m.node_id for m in config.members] == [me.node_id, online.node_id, offline.node_id]
    by_id = {m.node_id: m for m in config.members}
    assert by_id[online.node_id].endpoints == (("198.19.5.5", 4000), ("10.0.0.5", 9993))  # live, then local; deduplicated
    assert by_id[offline.node_id].endpoints == (("198.18.3.2", 9993),)
    assert by_id[me.node_id].ips == ("10.147.17.1/24",)
    assert (config.revision, config.issued_to, config.expires_s > config.timestamp_s == WALL_S) == (7, me.node_id, True)


@pytest.mark.parametrize("case", ["unknown", "unauthorized", "other keys"])
def test_only_an_authorized_member_with_the_keys_on_record_gets_a_config(case: str) -> None:
    node = Identity.generate()
    me = {
        "unknown": None,
        "unauthorized": member_of(node, node.node_id),
        "other keys": member_of(Identity.generate(), node.node_id, authorized=True),
    }[case]
    answering = issuer()
    [message] = answering.answer(NETWORK, [me] if me else [], me, client_of(node), {})
    response = NetconfResponse.parse(message)
    assert (str(response.status), response.revision, response.signed_config) == ("ACCESS_DENIED", 7, b"")
    assert answering.sent == {"access_denied": 1}


def test_a_large_config_travels_in_chunks_that_join_into_one_signed_config() -> None:
    me = Identity.generate()
    others = list(itertools.islice(random_identities(), 400))
    members = [member_of(me, me.node_id, authorized=True)] + [
        member_of(other, other.node_id, authorized=True, name=f"member-{i:04d}") for i, other in enumerate(others)
    ]
    answering = issuer()
    messages = answering.answer(NETWORK, members, members[0], client_of(me), {})
    assert len(messages) > 1 and answering.sent == {"netconf": 1}
    config = verify_signed_config(signed_config(messages), CONTROLLER.public, NETWORK.network_id, me.node_id, WALL_S)
    assert len(config.members) == 401


def test_a_config_beyond_the_chunk_limit_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(issuing, "MAX_NETCONF_CHUNKS", 0)
    me = Identity.generate()
    mine = member_of(me, me.node_id, authorized=True)
    answering = issuer()
    assert answering.answer(NETWORK, [mine], mine, client_of(me), {}) == []
    assert answering.drops == {"netconf_too_large": 1} and answering.sent == {}
