"""Who is talking to this controller: one Client per Noise session (l2mesh.session_server), and its networks.

A session names its node with its first netconf request (or is dropped
after UNIDENTIFIED_CLIENT_S, see session_server). A client that sent
anything within ONLINE_WINDOW_S is online: it gets pushes, and the relay
forwards to it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from l2mesh.identity import PublicIdentity
from l2mesh.netconf import usable_endpoints
from l2mesh.session import Session
from l2mesh.session_server import UNIDENTIFIED_CLIENT_S, SessionClient, SessionServer
from l2mesh.wire.common import Endpoint

__all__ = ["MAX_LOCAL_ENDPOINTS", "ONLINE_WINDOW_S", "UNIDENTIFIED_CLIENT_S", "Client", "Clients"]

ONLINE_WINDOW_S = 120.0
MAX_LOCAL_ENDPOINTS = 8
MAX_NETWORKS_PER_CLIENT = 64


@dataclass(eq=False)
class Client(SessionClient):
    """A node talking to this controller: the networks it asked for and the local addresses it told us."""

    networks: set[int] = field(default_factory=set)
    local_endpoints: list[Endpoint] = field(default_factory=list)
    client_version: str = ""  # the l2mesh version it reports in its netconf requests

    def online(self, now: float) -> bool:
        return now - self.last_seen_s <= ONLINE_WINDOW_S

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Where peers may reach it: its address as we see it, then the local ones it told us."""
        if self.via_root:
            return tuple(self.local_endpoints)
        return (self.endpoint, *self.local_endpoints)


def _new_client(session: Session, source: Endpoint, now: float) -> Client:
    return Client(session, source, first_seen_s=now)


class Clients(SessionServer[Client]):
    def __init__(self, private_key: bytes, drops: Counter[str]) -> None:
        super().__init__(private_key, drops, _new_client)

    def identify(self, client: Client, node_id: int, identity: PublicIdentity, network_id: int) -> None:
        """The client proved the keys we hold for node_id (a netconf request): it speaks for that node now."""
        self.name_client(client, node_id, identity)
        if len(client.networks) < MAX_NETWORKS_PER_CLIENT:
            client.networks.add(network_id)

    @staticmethod
    def set_local_endpoints(client: Client, endpoints: list[Endpoint]) -> None:
        # Checked: they go into every member's config.
        client.local_endpoints = usable_endpoints(endpoints, MAX_LOCAL_ENDPOINTS)

    def online(self, node_id: int, now: float) -> Client | None:
        client = self.by_node.get(node_id)
        return client if client is not None and client.online(now) else None

    def online_in(self, network_id: int, now: float) -> list[Client]:
        """Online clients that asked for this network."""
        return [c for c in self.by_static.values() if network_id in c.networks and c.online(now)]


MAX_VERSION_CHARS = 32


def printable_version(reported: str) -> str:
    """A member's self-reported version as shown to admins: printable ASCII only, bounded."""
    return "".join(ch for ch in reported[:MAX_VERSION_CHARS] if " " <= ch <= "~")
