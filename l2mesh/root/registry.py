"""Registrations at a root: which node is at which address, for how long, with which proven keys.

A registration is keyed by (node id, the address it came from): several
processes sharing one identity (controller instances) register from
different addresses, and each lives REGISTRATION_TTL_S unless renewed.
Registrations that came over a TCP stream keep their observed address for
the root's own use (it relays to them over the stream), but it is never
handed to other nodes: they could not reach it directly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from l2mesh.identity import PublicIdentity
from l2mesh.netconf import usable_endpoints
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import MAX_LOOKUP_ENDPOINTS, MAX_REGISTERED_ENDPOINTS

REGISTRATION_TTL_S = 90  # nodes renew every ~25 s, so two lost renewals in a row do not unregister them
MAX_REGISTRATIONS_PER_NODE = 8
MAX_REGISTRATIONS = 200_000
EXPIRY_SWEEP_S = 5.0


@dataclass(eq=False)
class Registration:
    node_id: int
    identity: PublicIdentity
    observed: Endpoint  # where it came from (a TCP connection's remote when stream)
    local_endpoints: tuple[Endpoint, ...]
    stream: bool
    heard_s: float
    expires_s: float

    def live(self, now: float) -> bool:
        return now < self.expires_s

    @property
    def reachable(self) -> tuple[Endpoint, ...]:
        """Where other nodes may try to reach it directly."""
        return self.local_endpoints if self.stream else (self.observed, *self.local_endpoints)


class Registry:
    def __init__(self, drops: Counter[str]) -> None:
        self.drops = drops
        self._by_node: dict[int, dict[Endpoint, Registration]] = {}
        self.count = 0
        self._next_sweep_s = 0.0

    def register(
        self, identity: PublicIdentity, observed: Endpoint, local_endpoints: list[Endpoint], stream: bool, now: float
    ) -> Registration | None:
        """File (or renew) the node's registration at observed; None when refused (counted)."""
        node_id = identity.node_id
        filed = self._by_node.setdefault(node_id, {})
        live = [r for r in filed.values() if r.live(now)]
        if any(r.identity != identity for r in live):
            # Other keys behind the same 40-bit id (a forged collision): the first holder keeps it.
            self.drops["registration_keys_mismatch"] += 1
            return None
        registration = filed.get(observed)
        if registration is None:
            if self.count >= MAX_REGISTRATIONS:
                self.drops["registry_full"] += 1
                return None
            if len(filed) >= MAX_REGISTRATIONS_PER_NODE:
                # Only the holder of the keys registers under this id: the one heard least recently gives way.
                self._remove(min(filed.values(), key=lambda r: r.heard_s))
            registration = filed[observed] = Registration(node_id, identity, observed, (), stream, now, now)
            self.count += 1
        registration.identity = identity
        registration.local_endpoints = tuple(usable_endpoints(local_endpoints, MAX_REGISTERED_ENDPOINTS))
        registration.stream = stream
        registration.heard_s = now
        registration.expires_s = now + REGISTRATION_TTL_S
        return registration

    def _remove(self, registration: Registration) -> None:
        filed = self._by_node.get(registration.node_id)
        if filed is not None and filed.pop(registration.observed, None) is registration:
            self.count -= 1
            if not filed:
                del self._by_node[registration.node_id]

    # -- look-ups ------------------------------------------------------------------------------------
    def at(self, node_id: int, observed: Endpoint, now: float) -> Registration | None:
        """The node's live registration from this very address, if any (the relay's anti-spoofing test)."""
        filed = self._by_node.get(node_id)
        registration = filed.get(observed) if filed is not None else None
        return registration if registration is not None and registration.live(now) else None

    def live(self, node_id: int, now: float) -> list[Registration]:
        """The node's live registrations, most recently heard first."""
        filed = self._by_node.get(node_id)
        if not filed:
            return []
        return sorted((r for r in filed.values() if r.live(now)), key=lambda r: r.heard_s, reverse=True)

    def newest(self, node_id: int, now: float) -> Registration | None:
        """Where the relay sends to the node: the registration heard from most recently."""
        live = self.live(node_id, now)
        return live[0] if live else None

    def endpoints(self, node_id: int, now: float, limit: int = MAX_LOOKUP_ENDPOINTS) -> list[Endpoint]:
        """Where others may reach the node: every live registration's observed address, then their local ones."""
        live = self.live(node_id, now)
        observed = [r.observed for r in live if not r.stream]
        local = [e for r in live for e in r.local_endpoints]
        return list(dict.fromkeys(observed + local))[:limit]

    def nodes(self) -> int:
        return len(self._by_node)

    # -- timers -------------------------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Forget registrations past their time (every EXPIRY_SWEEP_S; look-ups check liveness themselves)."""
        if now < self._next_sweep_s:
            return
        self._next_sweep_s = now + EXPIRY_SWEEP_S
        for filed in list(self._by_node.values()):
            for registration in [r for r in filed.values() if not r.live(now)]:
                self._remove(registration)
