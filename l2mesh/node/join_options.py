"""How a node joined a network (`l2mesh join` flags): which managed routes it accepts and what it forwards.

Kept with the joined network in the node's state directory, so a restarted
daemon sets the host up as it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from l2mesh.errors import L2meshError


@dataclass(frozen=True)
class JoinOptions:
    allow_default: bool = False  # install 0.0.0.0/0 and ::/0 routes (through an exit node)
    managed_routes: bool = True  # install the network's other routes (--no-managed-routes: none)
    exit_node: bool = False  # forward for members and masquerade what leaves through the underlay
    subnet_router: bool = False  # forward between the overlay and a LAN behind this host, addresses kept

    @property
    def forwards(self) -> bool:
        return self.exit_node or self.subnet_router

    @property
    def roles(self) -> tuple[str, ...]:
        """What this member does for the network, for people: ("exit node",), ("subnet router",), both or none."""
        return tuple(role for role, on in (("exit node", self.exit_node), ("subnet router", self.subnet_router)) if on)

    def to_json(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> JoinOptions:
        """Flags from a control request or a state file; a missing flag keeps its default (older files have none)."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise L2meshError("join options must be a JSON object")
        values = {}
        for field in fields(cls):
            if field.name in doc:
                if not isinstance(doc[field.name], bool):
                    raise L2meshError(f"join option {field.name} must be true or false")
                values[field.name] = doc[field.name]
        return cls(**values)
