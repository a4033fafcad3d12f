"""What the node core reports to its edge (rarer news than packets): a network's config or status changed,
a bridge stands down, a broadcast storm, a flow rule dropping or logging a new kind of traffic, a controller's keys learned."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from l2mesh.identity import PublicIdentity
from l2mesh.wire.common import Endpoint
from l2mesh.netconf import NetworkConfig
from l2mesh.netconf_delta import MemberChanges


class NetworkStatus(enum.Enum):
    REQUESTING = "REQUESTING"
    ACCESS_DENIED = "ACCESS_DENIED"
    NOT_FOUND = "NOT_FOUND"
    OK = "OK"


@dataclass(frozen=True)
class NetworkConfigured:
    """A network's config was applied (first time or changed): the edge sets up its TAP and addresses."""

    network_id: int
    config: NetworkConfig
    signed: bytes | None = None  # as the controller signed it, for the edge's cache
    changes: MemberChanges | None = None  # from a delta: only these members differ from changes.base


@dataclass(frozen=True)
class NetworkStatusChanged:
    """A network lost its config (ACCESS_DENIED, NOT_FOUND): the edge removes its managed addresses."""

    network_id: int
    status: NetworkStatus


@dataclass(frozen=True)
class NetworkRemoved:
    network_id: int


@dataclass(frozen=True)
class LoopStateChanged:
    """This bridge member started (or stopped) standing down for a bridge with a lower id on its LAN."""

    network_id: int
    blocked: bool
    neighbours: tuple[int, ...]


@dataclass(frozen=True)
class BroadcastStorm:
    """A source exceeded the multicast/broadcast rate on a network (reported once per source)."""

    network_id: int
    source: int


@dataclass(frozen=True)
class FlowRuleMatched:
    """A drop or log rule matched a frame to (outbound) or from (inbound) a peer: reported once per rule, direction and peer."""

    network_id: int
    line: int
    rule: str
    action: str
    direction: str
    peer: int


@dataclass(frozen=True)
class ControllerIdentityLearned:
    """The edge caches it, so a restart works while the controller is down."""

    node_id: int
    identity: PublicIdentity


@dataclass(frozen=True)
class RootPinned:
    """A root given as HOST:PORT answered with its keys: the edge pins them (trust on first use)."""

    node_id: int
    identity: PublicIdentity
    endpoint: Endpoint
