"""What a member's netconf request writes: the member if it is new, its keys if it was pre-authorized, its endpoint.

The core plans this write from its directory on the reactor thread; the
storage writer commits it later, and an admin change to the same member may
commit in between (an authorize racing the member's first request, say).
So the write is field-level and decided again inside its transaction: it
inserts only a member that does not exist, binds keys only to a member that
has none, sets only the endpoint, and never touches what admins set
(authorization, addresses, bridge flag, name).
"""

from __future__ import annotations

from dataclasses import dataclass

from l2mesh.controller.admin import with_pool_address
from l2mesh.controller.changes import Committed
from l2mesh.controller.model import Member, ValidationError
from l2mesh.controller.storage import Storage
from l2mesh.identity import PublicIdentity


@dataclass(frozen=True)
class MemberAsked:
    network_id: int
    node_id: int
    identity: PublicIdentity
    endpoint: str  # where its request came from, "IP:PORT"
    # The member moved and its peers should hear of it now (a new revision);
    # the core rate-limits this, so a member hopping ports cannot make us push at will.
    announce_endpoint: bool
    wall_s: float  # creation time, if it is new

    @property
    def key(self) -> tuple[int, int]:
        return (self.network_id, self.node_id)

    def commit(self, storage: Storage) -> Committed:
        with storage.transaction():
            network = storage.find_network(self.network_id)
            if network is None:
                return Committed(asked=self.key)  # deleted meanwhile
            member = storage.find_member(self.network_id, self.node_id)
            drops: tuple[str, ...] = ()
            if member is None:
                # Public networks authorize whoever asks; private ones list the node for an admin.
                member = Member(
                    self.network_id, self.node_id, self.identity,
                    authorized=not network.private, created_s=self.wall_s, endpoint=self.endpoint,
                )
                if member.authorized:
                    try:
                        member = with_pool_address(network, member, storage.list_members(self.network_id))
                    except ValidationError:
                        drops = ("pool_full",)  # a member without an address; the admin can add one
                storage.insert_member(member)
                new_revision = member.authorized
            elif member.identity is not None and member.identity != self.identity:
                return Committed(members=(member,), asked=self.key, drops=("member_keys_mismatch",))
            else:
                # Pre-authorized by id: the first node with that id binds its keys.
                new_revision = member.identity is None and storage.bind_identity(self.network_id, self.node_id, self.identity)
                new_revision = new_revision and member.authorized
                if member.endpoint != self.endpoint:
                    storage.set_endpoint(self.network_id, self.node_id, self.endpoint)
                    new_revision = new_revision or (self.announce_endpoint and member.authorized)
            if new_revision:
                storage.bump_revision(self.network_id)
            network = storage.get_network(self.network_id)
            member = storage.get_member(self.network_id, self.node_id)
        return Committed(
            networks=(network,), members=(member,), push=(self.network_id,) if new_revision else (), asked=self.key, drops=drops
        )

    def failed(self) -> Committed:
        return Committed(asked=self.key, failed=True, drops=("storage_write_failed",))
