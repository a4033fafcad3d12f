"""What a node keeps on disk besides its identity: joined networks, cached configs, controller keys (root keys: l2mesh/edge/roots.py).

Joined networks survive restarts, with the flags they were joined with (which
routes to accept, exit node, subnet router); the last signed config of each network and
the controller keys it is checked against let a restarted node forward at
once, even while its controller is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from l2mesh.errors import L2meshError, StateError
from l2mesh.identity import PublicIdentity
from l2mesh.ids import format_network_id, format_node_id, parse_network_id
from l2mesh.netconf import parse_endpoint
from l2mesh.node.join_options import JoinOptions
from l2mesh.edge.statefile import atomic_write_bytes, atomic_write_json, read_json, remove_stale_temporaries
from l2mesh.wire.common import Endpoint

NETWORKS_FILE = "networks.json"
NETCONF_DIR = "netconf"
CONTROLLERS_DIR = "controllers"


@dataclass(frozen=True)
class JoinedNetwork:
    controller: Endpoint | None  # None: found through the roots
    options: JoinOptions = field(default_factory=JoinOptions)


class NodeState:
    def __init__(self, state_dir: Path) -> None:
        """The daemon's, once at start: the state directory's own leftovers go with ensure_state_dir, these with it."""
        self.state_dir = state_dir
        for subdirectory in (NETCONF_DIR, CONTROLLERS_DIR):
            remove_stale_temporaries(state_dir / subdirectory)

    def load_joined(self) -> dict[int, JoinedNetwork]:
        """Joined networks: the controller address given (None: found through the roots) and the join's flags."""
        path = self.state_dir / NETWORKS_FILE
        if not path.exists():
            return {}
        doc = read_json(path)
        try:
            return {
                parse_network_id(k): JoinedNetwork(
                    parse_endpoint(v["controller"]) if v["controller"] is not None else None,
                    JoinOptions.from_json(v.get("options")),
                )
                for k, v in doc["networks"].items()
            }
        except (KeyError, TypeError, AttributeError, ValueError, L2meshError) as exc:
            raise StateError(f"{path} is corrupted: {exc}") from None

    def save_joined(self, joined: dict[int, JoinedNetwork]) -> None:
        atomic_write_json(
            self.state_dir / NETWORKS_FILE,
            {
                "networks": {
                    format_network_id(n): {"controller": endpoint_text(j.controller), "options": j.options.to_json()}
                    for n, j in sorted(joined.items())
                }
            },
        )

    def load_signed_netconf(self, network_id: int) -> bytes | None:
        path = self.state_dir / NETCONF_DIR / f"{format_network_id(network_id)}.signed"
        try:
            return path.read_bytes()
        except OSError:
            return None

    def save_signed_netconf(self, network_id: int, signed: bytes) -> None:
        directory = self.state_dir / NETCONF_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        atomic_write_bytes(directory / f"{format_network_id(network_id)}.signed", signed)

    def forget_network(self, network_id: int) -> None:
        try:
            (self.state_dir / NETCONF_DIR / f"{format_network_id(network_id)}.signed").unlink()
        except OSError:
            pass

    def load_controller(self, node_id: int) -> PublicIdentity | None:
        path = self.state_dir / CONTROLLERS_DIR / f"{format_node_id(node_id)}.json"
        if not path.exists():
            return None
        try:
            identity = PublicIdentity.from_json(read_json(path))
        except Exception:
            return None  # a damaged cache is refetched from the controller
        return identity if identity.node_id == node_id else None

    def save_controller(self, identity: PublicIdentity) -> None:
        directory = self.state_dir / CONTROLLERS_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        atomic_write_json(directory / f"{format_node_id(identity.node_id)}.json", identity.to_json())


def _endpoint_text(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint_text(endpoint: Endpoint | None) -> str | None:
    return None if endpoint is None else _endpoint_text(endpoint)


