"""What every user of a root does alike, nodes and controllers: fetch and check its keys, register with it.

Sans-IO. A root is named `ID@HOST:PORT` (its keys are fetched and must hash
to ID) or `HOST:PORT` (fetched and pinned on first use, as SSH does);
registration proves our Ed25519 key over the session that proves our
X25519 key, bound to the root's id so a root cannot replay it elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import MAX_REGISTERED_ENDPOINTS, ROOT_REGISTER_CONTEXT, RootRegister, RootRegistered
from l2mesh.wire.packets import ANY_NODE_ID, IdentityRequest, IdentityResponse

REGISTER_INTERVAL_S = 25.0
REGISTER_RETRY_S = 2.0  # until the first ROOT_REGISTERED
PIN_RETRY_S = 1.0


@dataclass
class RootLink:
    """One root we were given: where it is, its keys once known, our registration there."""

    endpoint: Endpoint
    expected_id: int | None = None  # given as ID@HOST:PORT: the keys it sends must hash to ID
    node_id: int | None = None  # None while its keys are being fetched
    identity: PublicIdentity | None = None
    next_pin_request_s: float = 0.0
    next_register_s: float = 0.0
    registered_s: float | None = None  # last ROOT_REGISTERED
    observed: Endpoint | None = None  # our address as the root sees it
    tcp: bool = False  # the edge carries our datagrams to it over TCP (no UDP out)

    def accept_given(self, identity: PublicIdentity | None) -> PublicIdentity | None:
        """Keys pinned earlier, unless pinned for another id than the one the operator names now."""
        if identity is not None and self.expected_id is not None and identity.node_id != self.expected_id:
            return None
        return identity

    def pin_request(self, now: float) -> bytes | None:
        """An identity request to send to the root's address now, if one is due."""
        if self.identity is not None or now < self.next_pin_request_s:
            return None
        self.next_pin_request_s = now + PIN_RETRY_S
        return IdentityRequest.build({"node_id": self.expected_id if self.expected_id is not None else ANY_NODE_ID})

    def pinned_keys(self, data: bytes | memoryview) -> PublicIdentity | str:
        """The keys in an identity response from the root's address, or the drop reason."""
        response = parse_or_none(IdentityResponse, data)
        if response is None:
            return "identity_response_malformed"
        identity = PublicIdentity(response.x25519, response.ed25519)
        if self.expected_id is not None and identity.node_id != self.expected_id:
            return "root_keys_mismatch"
        return identity

    def trust(self, identity: PublicIdentity) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.next_register_s = 0.0

    def register_due(self, now: float) -> bool:
        if self.identity is None or now < self.next_register_s:
            return False
        self.next_register_s = now + (REGISTER_INTERVAL_S if self.registered_s is not None else REGISTER_RETRY_S)
        return True

    def registered(self, message: bytes, now: float) -> bool:
        """A ROOT_REGISTERED from this root; False if malformed."""
        reply = parse_or_none(RootRegistered, message)
        if reply is None:
            return False
        self.registered_s = now
        self.observed = tuple(reply.observed)  # type: ignore[assignment]
        # Renew well within the root's time to live, however short it chose.
        self.next_register_s = now + min(REGISTER_INTERVAL_S, max(1.0, reply.ttl_s / 3))
        return True


def register_message(identity: Identity, root_id: int, local_endpoints: list[Endpoint]) -> bytes:
    """ROOT_REGISTER for one root: our Ed25519 key, proven, and the addresses only we know."""
    proof = identity.sign(ROOT_REGISTER_CONTEXT + identity.x25519_public + root_id.to_bytes(5, "big"))
    return RootRegister.build(
        {"ed25519": identity.ed25519_public, "proof": proof, "local_endpoints": local_endpoints[:MAX_REGISTERED_ENDPOINTS]}
    )
