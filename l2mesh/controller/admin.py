"""Admin changes, each validated against storage and committed in one transaction, and the admin views.

The changes run on the storage writer thread, never on the reactor thread
that carries packets: each reads what it checks and writes inside one
transaction, durable before it returns (no acknowledged change is lost
across a crash). Its Committed result goes to the reactor thread, which
updates the directory and pushes the new config to online members before
the API answers. The views read the directory, on the reactor thread.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from l2mesh.controller.changes import Committed
from l2mesh.controller.directory import Directory
from l2mesh.controller.model import (
    MAX_IPS_PER_MEMBER,
    Member,
    Network,
    NotFound,
    ValidationError,
    check_no_duplicate_ips,
    assign_from_pools,
    member_interface,
    route_list,
    validate_network_fields,
    validate_routes,
    validate_rules,
    validate_tags,
)
from l2mesh.controller.storage import Storage
from l2mesh.ids import format_network_id, format_node_id
from l2mesh.managed_routes import ManagedRoute

# routes: the whole list; add_routes and remove_routes: changes to it, made
# inside the transaction that writes them, so that two admins adding a route
# each at the same time both keep theirs.
NETWORK_FIELDS = frozenset(
    {"name", "pools", "routes", "add_routes", "remove_routes", "mtu", "multicast_limit", "broadcast", "private", "dns_domain"}
)
MEMBER_FIELDS = frozenset({"authorized", "ips", "bridge", "name", "tags"})
MAX_MEMBER_NAME_CHARS = 64


# -- changes (storage writer thread) ------------------------------------------------------------------
def create_network(storage: Storage, controller_id: int, doc: dict[str, Any]) -> Committed:
    fields = validate_network_fields(
        name=doc.get("name") or "", pools=doc.get("pools", []),
        mtu=doc.get("mtu"), multicast_limit=doc.get("multicast_limit"), dns_domain=doc.get("dns_domain"),
    )
    fields.update(_flags(doc))
    # Checked against the pools given with them (the id is not known yet, nor needed); "pools": null gives none.
    fields["routes"] = validate_routes(Network(0, "", pools=fields.get("pools", ())), route_list(doc.get("routes", []), "routes"))
    network = storage.create_network(controller_id, fields)
    return Committed(networks=(network,), answer=network)


def update_network(storage: Storage, network_id: int, doc: dict[str, Any]) -> Committed:
    _refuse_unknown(doc, NETWORK_FIELDS, "network")
    fields = validate_network_fields(
        name=doc.get("name"), pools=doc.get("pools"),
        mtu=doc.get("mtu"), multicast_limit=doc.get("multicast_limit"), dns_domain=doc.get("dns_domain"),
    )
    if "multicast_limit" in doc and doc["multicast_limit"] is None:
        fields["multicast_limit"] = None
    fields.update(_flags(doc))
    with storage.transaction():
        current = storage.get_network(network_id)
        changed = replace(current, **fields)
        # Routes are checked whenever pools or routes change: a pool change must not strand a gateway.
        fields["routes"] = validate_routes(changed, _changed_routes(current.routes, doc))
        network = storage.update_network(network_id, fields)
    return Committed(networks=(network,), push=(network_id,), answer=network)


def _changed_routes(current: tuple[ManagedRoute, ...], doc: dict[str, Any]) -> list[ManagedRoute]:
    """The route list after doc's routes (replace), then remove_routes (by target), then add_routes (a
    target already there gets the new gateway)."""
    routes = route_list(doc["routes"], "routes") if "routes" in doc else list(current)
    if "remove_routes" in doc:
        for gone in route_list(doc["remove_routes"], "remove_routes"):
            if not any(r.network == gone.network for r in routes):
                raise ValidationError(f"no route to {gone.target} on this network")
            routes = [r for r in routes if r.network != gone.network]
    for added in route_list(doc.get("add_routes", []), "add_routes"):
        routes = [r for r in routes if r.network != added.network] + [added]
    return routes


def set_rules(storage: Storage, network_id: int, doc: dict[str, Any]) -> Committed:
    """Replace a network's flow rules: checked whole first (a bad line stores nothing), then pushed at once."""
    _refuse_unknown(doc, frozenset({"rules"}), "rules")
    if "rules" not in doc:
        raise ValidationError("give the rules as {\"rules\": TEXT}")
    network = storage.update_network(network_id, {"rules": validate_rules(doc["rules"])})
    return Committed(networks=(network,), push=(network_id,), answer=network)


def delete_network(storage: Storage, network_id: int) -> Committed:
    storage.delete_network(network_id)
    return Committed(deleted_networks=(network_id,), push=(network_id,))


def update_member(storage: Storage, network_id: int, node_id: int, doc: dict[str, Any], wall_s: float) -> Committed:
    """Authorize/deauthorize, set IPs, bridge flag or name; creates a pre-authorized member if unknown."""
    _refuse_unknown(doc, MEMBER_FIELDS, "member")
    with storage.transaction():
        network = storage.get_network(network_id)
        member = storage.find_member(network_id, node_id) or Member(network_id, node_id, created_s=wall_s)
        changes: dict[str, Any] = {}
        if "authorized" in doc:
            changes["authorized"] = _bool(doc["authorized"], "authorized")
        if "bridge" in doc:
            changes["bridge"] = _bool(doc["bridge"], "bridge")
        if "name" in doc:
            if not isinstance(doc["name"], str) or len(doc["name"]) > MAX_MEMBER_NAME_CHARS:
                raise ValidationError(f"member name must be a string of at most {MAX_MEMBER_NAME_CHARS} characters")
            changes["name"] = doc["name"]
        if "tags" in doc:
            changes["tags"] = validate_tags(doc["tags"])
        if "ips" in doc:
            if not isinstance(doc["ips"], list):
                raise ValidationError("ips must be a list of addresses")
            if len(doc["ips"]) > MAX_IPS_PER_MEMBER:
                raise ValidationError(f"a member has at most {MAX_IPS_PER_MEMBER} addresses")
            changes["ips"] = tuple(member_interface(network, str(ip)) for ip in doc["ips"])
        before = member
        member = replace(member, **changes)
        # Bridges carry a LAN; their addresses live on the Linux bridge, not the TAP.
        wants_pool_address = member.authorized and not member.ips and "ips" not in doc and not member.bridge and network.pools
        if wants_pool_address or member.ips != before.ips:
            # Only then are the others' addresses read: most changes (authorize, rename) leave addresses alone.
            others = [m for m in storage.list_members(network_id) if m.node_id != node_id]
            if wants_pool_address:
                member = with_pool_address(network, member, others)
            check_no_duplicate_ips(member.ips, others)
        # A member whose node never asked is in nobody's config yet: no new revision to push.
        visible = member.identity is not None
        storage.save_member(member, bump_revision=visible)
        network = storage.get_network(network_id)
    return Committed(networks=(network,), members=(member,), push=(network_id,) if visible else (), answer=member)


def delete_member(storage: Storage, network_id: int, node_id: int) -> Committed:
    with storage.transaction():
        storage.delete_member(network_id, node_id)
        network = storage.get_network(network_id)
    return Committed(networks=(network,), deleted_members=((network_id, node_id),), push=(network_id,))


def with_pool_address(network: Network, member: Member, members: list[Member]) -> Member:
    """member with the lowest free pool address (given the network's members); unchanged without pools."""
    address = assign_from_pools(network, {ip for m in members for ip in m.ips})
    if address is None:
        if network.pools:
            raise ValidationError(f"the pools of network {network.name!r} are full")
        return member
    return replace(member, ips=(address,))


def _refuse_unknown(doc: dict[str, Any], known: frozenset[str], what: str) -> None:
    unknown = set(doc) - known
    if unknown:
        raise ValidationError(f"unknown {what} field(s): {', '.join(sorted(unknown))}")


def _flags(doc: dict[str, Any]) -> dict[str, bool]:
    return {flag: _bool(doc[flag], flag) for flag in ("broadcast", "private") if flag in doc}


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false")
    return value


# -- views (reactor thread, from the directory) -----------------------------------------------------
def network_doc(directory: Directory, network_id: int) -> dict[str, Any]:
    return known_network(directory, network_id).to_json()


def rules_doc(directory: Directory, network_id: int) -> dict[str, Any]:
    return known_network(directory, network_id).rules_json()


def network_list(directory: Directory) -> list[dict[str, Any]]:
    out = []
    for network in sorted(directory.networks.values(), key=lambda n: n.created_s):
        doc = network.to_json()
        members = directory.members(network.network_id)
        doc["members"] = len(members)
        doc["authorized"] = sum(1 for m in members if m.authorized)
        out.append(doc)
    return out


def known_network(directory: Directory, network_id: int) -> Network:
    network = directory.network(network_id)
    if network is None:
        raise NotFound(f"no network {format_network_id(network_id)}")
    return network


def known_member(directory: Directory, network_id: int, node_id: int) -> Member:
    member = directory.member(network_id, node_id)
    if member is None:
        raise NotFound(f"no member {format_node_id(node_id)} in network {format_network_id(network_id)}")
    return member


def member_doc(member: Member, online_since_s: float | None, version: str | None = None) -> dict[str, Any]:
    """online_since_s: wall time the member was last heard from, if it has a session with us now;
    version: the l2mesh version it reported, if online."""
    doc = member.to_json()
    if online_since_s is not None:
        doc["last_seen"] = online_since_s
    doc["online"] = online_since_s is not None
    doc["version"] = version
    return doc
