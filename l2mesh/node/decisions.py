"""What the node's sub-state-machines (membership.py, paths.py, roots.py) ask for: they return these, the core applies them.

Membership and Paths hold no reference to the core, in the manner of h11's
events: they take narrow inputs (a peer, a message, the time) and answer
with decisions; the core (and, for the sending kinds, the send path) carries
them out. Kept as plain frozen records so a test can assert on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from l2mesh.identity import PublicIdentity
from l2mesh.netconf import NetworkConfig
from l2mesh.netconf_delta import MemberChanges
from l2mesh.node.events import NetworkStatus
from l2mesh.wire.common import Endpoint


# -- sending ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendDatagram:
    """A datagram as it is (a handshake packet, an identity request) to one endpoint."""

    data: bytes
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class SendMessage:
    """An inner message sealed to a peer on the path in use (behind a handshake if there is no session)."""

    node_id: int
    message: bytes


@dataclass(frozen=True, slots=True)
class SendOnPath:
    """An inner message sealed with the current session, on exactly this path (endpoint None: the relay).

    Probes test one path; answers go back on the path a probe came by.
    Dropped when no session is established.
    """

    node_id: int
    message: bytes
    endpoint: Endpoint | None


@dataclass(frozen=True, slots=True)
class SendRelayed:
    """A session packet (a handshake initiation) through the relay."""

    node_id: int
    packet: bytes


# -- peers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UseEndpoint:
    node_id: int
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class RenewSession:
    """Handshake again now (the other side seems to have lost our keys, or a punch needs a packet)."""

    node_id: int
    restart: bool = False  # even over a handshake still pending (it went to a controller instance we left)


@dataclass(frozen=True, slots=True)
class TrustController:
    """A controller's keys, verified against the id inside the network id: make it a peer at endpoint."""

    node_id: int
    identity: PublicIdentity
    endpoint: Endpoint | None  # None: not known yet (our roots know only its keys, or it registered over TCP)
    learned: bool  # just fetched (not from the edge's cache): the edge should cache it


@dataclass(frozen=True, slots=True)
class ForgetPeer:
    node_id: int


@dataclass(frozen=True, slots=True)
class AnnounceEndpoints:
    """Tell this controller our local addresses (candidates for peers on our LAN)."""

    controller_id: int


# -- roots --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TrustRoot:
    """A root's keys (given, or fetched from its address and pinned): a peer to register with."""

    node_id: int
    identity: PublicIdentity
    endpoint: Endpoint
    learned: bool  # just fetched: the edge should pin it


@dataclass(frozen=True, slots=True)
class LookupNode:
    """Ask our roots where this node is."""

    node_id: int


@dataclass(frozen=True, slots=True)
class NodeLocated:
    """A root said where a node is registered, with keys that hash to its id."""

    node_id: int
    identity: PublicIdentity
    endpoints: list[Endpoint]


# -- networks --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ApplyConfig:
    config: NetworkConfig
    signed: bytes | None
    changes: MemberChanges | None = None  # a delta's: what differs from the config held (None: anything may)


@dataclass(frozen=True, slots=True)
class DenyNetwork:
    network_id: int
    status: NetworkStatus


@dataclass(frozen=True, slots=True)
class MarkNetworkOk:
    """The controller says the config we hold is current."""

    network_id: int


Send = SendDatagram | SendMessage | SendOnPath | SendRelayed
Decision = (
    Send | UseEndpoint | RenewSession | TrustController | ForgetPeer | AnnounceEndpoints | ApplyConfig | DenyNetwork
    | MarkNetworkOk | TrustRoot | LookupNode | NodeLocated
)
