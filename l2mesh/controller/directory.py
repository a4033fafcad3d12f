"""The controller's in-memory directory of networks and members: what the reactor thread answers from.

The reactor thread answers every packet from here and never reads or
writes storage: the directory is loaded from storage at start and changed
only by Committed results, which the storage writer hands over in the order
it committed them. So it always equals storage as of some commit. It also
indexes where each node is authorized, which the relay checks per packet.
"""

from __future__ import annotations

from dataclasses import replace

from l2mesh.controller.changes import Committed
from l2mesh.controller.model import Member, Network
from l2mesh.controller.storage import Storage
from l2mesh.identity import PublicIdentity


class Directory:
    def __init__(self) -> None:
        self.networks: dict[int, Network] = {}
        self._members: dict[int, dict[int, Member]] = {}  # network id -> node id -> member, in creation order
        self._authorized_in: dict[int, set[int]] = {}  # node id -> networks it is authorized in

    @classmethod
    def load(cls, storage: Storage) -> Directory:
        directory = cls()
        for network in storage.list_networks():
            directory.apply(Committed(networks=(network,), members=tuple(storage.list_members(network.network_id))))
        return directory

    # -- reading ------------------------------------------------------------------------------------
    def network(self, network_id: int) -> Network | None:
        return self.networks.get(network_id)

    def member(self, network_id: int, node_id: int) -> Member | None:
        members = self._members.get(network_id)
        return members.get(node_id) if members is not None else None

    def members(self, network_id: int) -> list[Member]:
        return list(self._members.get(network_id, {}).values())

    def identity_of(self, node_id: int) -> PublicIdentity | None:
        """The keys a node proved in any network of ours (None if it never asked to join)."""
        for members in self._members.values():
            member = members.get(node_id)
            if member is not None and member.identity is not None:
                return member.identity
        return None

    def authorized_together(self, a: int, b: int) -> bool:
        """Both authorized in some network: who may relay to whom and be introduced to whom."""
        networks_a = self._authorized_in.get(a)
        networks_b = self._authorized_in.get(b)
        return networks_a is not None and networks_b is not None and not networks_a.isdisjoint(networks_b)

    # -- changing (reactor thread, in commit order) ---------------------------------------------------
    def apply(self, change: Committed) -> None:
        for network in change.networks:
            self.networks[network.network_id] = network
            self._members.setdefault(network.network_id, {})
        for member in change.members:
            members = self._members.get(member.network_id)
            if members is None:
                continue  # its network is gone
            self._unindex(members.get(member.node_id))
            members[member.node_id] = member
            self._index(member)
        for network_id, node_id in change.deleted_members:
            members = self._members.get(network_id)
            if members is not None:
                self._unindex(members.pop(node_id, None))
        for network_id in change.deleted_networks:
            self.networks.pop(network_id, None)
            for member in self._members.pop(network_id, {}).values():
                self._unindex(member)
        for network_id, node_id, wall_s in change.seen:
            seen = self.member(network_id, node_id)
            if seen is not None:
                self._members[network_id][node_id] = replace(seen, last_seen_s=wall_s)

    def replace(self, change: Committed) -> list[int]:
        """A reload (reload.py): its networks' stored state replaces ours; the networks whose revision moved.

        Networks and members it does not list, within its scope, were deleted.
        """
        scope = set(self.networks) if change.reload_of is None else {change.reload_of}
        listed = {network.network_id: network for network in change.networks}
        moved = [
            network_id for network_id in sorted(scope | set(listed))
            if (self.networks[network_id].revision if network_id in self.networks else None)
            != (listed[network_id].revision if network_id in listed else None)
        ]
        listed_members = {(m.network_id, m.node_id) for m in change.members}
        gone_members = tuple(
            (network_id, member.node_id)
            for network_id in scope & set(listed)
            for member in self.members(network_id)
            if (network_id, member.node_id) not in listed_members
        )
        self.apply(Committed(
            networks=change.networks, members=change.members,
            deleted_networks=tuple(scope - set(listed)), deleted_members=gone_members,
        ))
        return moved

    def _index(self, member: Member) -> None:
        if member.authorized:
            self._authorized_in.setdefault(member.node_id, set()).add(member.network_id)

    def _unindex(self, member: Member | None) -> None:
        if member is None or not member.authorized:
            return
        networks = self._authorized_in.get(member.node_id)
        if networks is not None:
            networks.discard(member.network_id)
            if not networks:
                del self._authorized_in[member.node_id]
