"""`l2mesh ping`, sans-IO: probes through the overlay session to one peer, and what came back on which path.

A ping is a PathProbe (l2mesh/wire/messages.py) sealed in the session, as
the paths' own probes are: every l2mesh node, however old, answers one on
the path it came by, so no new message is needed and a ping measures
exactly what the paths measure. It goes on the path in use (through a
handshake first when there is no session, so the first reply may be
slower, as tailscale's is); its reply says the path: direct, from the peer's
underlay address, or relayed, from the relay's. Pings keep their own table
of probe ids, apart from the paths', so a burst of candidate probes can
never push a ping out (and a ping never moves a path).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from l2mesh.dns_names import host_label
from l2mesh.errors import L2meshError
from l2mesh.ids import format_node_id, parse_node_id
from l2mesh.netconf import NetworkConfig
from l2mesh.wire.common import Endpoint
from l2mesh.wire.errors import parse_or_none
from l2mesh.wire.messages import PathProbe, PathProbeReply

# The edge forgets a ping it stopped waiting for; this bounds what a caller that never does can leave behind.
MAX_OUTSTANDING_PINGS = 64


@dataclass(frozen=True, slots=True)
class PingReply:
    """One answered ping: on which path it came back, and the round trip."""

    node_id: int
    relayed: bool
    endpoint: Endpoint  # direct: the peer's underlay address; relayed: the relay's
    relay_id: int | None  # relayed: the node that relayed it (a root or a controller)
    rtt_ms: float

    @property
    def path(self) -> str:
        return "relay" if self.relayed else "direct"


class Pings:
    """Pings in flight by probe id, and the answers not yet collected by the edge."""

    def __init__(self) -> None:
        self.outstanding: dict[int, tuple[int, float]] = {}  # probe id -> (node id, sent at)
        self.answered: dict[int, PingReply] = {}

    def start(self, node_id: int, now: float) -> tuple[int, bytes]:
        """A new ping to node_id: its probe id and the message to seal to the peer."""
        while len(self.outstanding) + len(self.answered) >= MAX_OUTSTANDING_PINGS:
            self.forget(next(iter(self.outstanding)) if self.outstanding else next(iter(self.answered)))
        probe_id = int.from_bytes(os.urandom(8), "big")
        self.outstanding[probe_id] = (node_id, now)
        return probe_id, PathProbe.build({"probe_id": probe_id})

    def reply_received(
        self, node_id: int, message: bytes, source: Endpoint, relayed: bool, relay_id: int | None, now: float
    ) -> bool:
        """A PathProbeReply from node_id: True when it answers one of our pings (it is ours, not the paths')."""
        reply = parse_or_none(PathProbeReply, message)
        if reply is None:
            return False
        sent = self.outstanding.get(reply.probe_id)
        if sent is None or sent[0] != node_id:
            return False
        del self.outstanding[reply.probe_id]
        self.answered[reply.probe_id] = PingReply(
            node_id, relayed, source, relay_id if relayed else None, (now - sent[1]) * 1000.0
        )
        return True

    def take(self, probe_id: int) -> PingReply | None:
        """The answer to a ping, once (None while none came)."""
        return self.answered.pop(probe_id, None)

    def forget(self, probe_id: int) -> None:
        """The edge stopped waiting: a late answer is then not ours and goes to the paths (which ignore it)."""
        self.outstanding.pop(probe_id, None)
        self.answered.pop(probe_id, None)


def resolve_node(text: str, configs: Iterable[NetworkConfig], own_id: int) -> int:
    """A node id (10 hex digits) or a member's name (as set by `member authorize --name`, or its DNS label)
    in any network we hold a config of; L2meshError with a one-line reason otherwise."""
    wanted = text.strip()
    try:
        node_id = parse_node_id(wanted)
    except L2meshError:
        node_id = None
    if node_id is not None:
        if node_id == own_id:
            raise L2meshError(f"{format_node_id(node_id)} is this node")
        return node_id
    label = host_label(wanted)
    found = {
        member.node_id
        for config in configs
        for member in config.members
        if member.name and (member.name == wanted or (label is not None and host_label(member.name) == label))
    }
    found.discard(own_id)
    if not found:
        raise L2meshError(f"unknown node {wanted!r}: not a node id (10 hex digits) nor a member name in a joined network")
    if len(found) > 1:
        raise L2meshError(f"{wanted!r} names several members ({', '.join(format_node_id(n) for n in sorted(found))}): ping one by id")
    return found.pop()
