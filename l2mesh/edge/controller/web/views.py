"""What the web admin's pages show, read from the controller core on its reactor thread (as the JSON API's views are).

Plain dicts for the templates. Online state and path come from the core's
sessions (a member talking to us through a root is on a relayed path); last
seen from the member seen records; the software version is what an online
member reported in its netconf requests. What is not known is None, shown as "—".
"""

from __future__ import annotations

from typing import Any

from l2mesh.controller.admin import known_network
from l2mesh.controller.core import ControllerCore
from l2mesh.controller.model import Member, Network
from l2mesh.ids import format_network_id, format_node_id


def member_view(core: ControllerCore, member: Member) -> dict[str, Any]:
    client = core.clients.by_node.get(member.node_id)
    online_since_s = core.online_since(member.node_id)
    return {
        "id": format_node_id(member.node_id),
        "name": member.name,
        "authorized": member.authorized,
        "bridge": member.bridge,
        "ips": [ip.split("/")[0] for ip in member.ips],
        "cidrs": list(member.ips),
        "tags": list(member.tags),
        "asked": member.identity is not None,  # the node itself asked (not only pre-authorized by an admin)
        "online": online_since_s is not None,
        "last_seen": online_since_s if online_since_s is not None else member.last_seen_s,
        "path": None if client is None else ("relay" if client.via_root else "direct"),
        "endpoint": member.endpoint,
        "version": core.reported_version(member.node_id),
    }


def network_view(core: ControllerCore, network: Network) -> dict[str, Any]:
    members = [member_view(core, m) for m in core.directory.members(network.network_id)]
    return {
        "id": format_network_id(network.network_id),
        "name": network.name,
        "pools": list(network.pools),
        "routes": [route.spec() for route in network.routes],
        "dns_domain": network.dns_domain,
        "effective_dns_domain": network.effective_dns_domain,
        "mtu": network.mtu_bytes,
        "multicast_limit": network.multicast_limit,
        "broadcast": network.broadcast,
        "private": network.private,
        "revision": network.revision,
        "rules_text": network.rules.text,
        "rule_count": len(network.rules.rules),
        "members": members,
        # Who asks to join: nodes that asked and are not (or no longer) authorized.
        "pending": [m for m in members if m["asked"] and not m["authorized"]],
        "authorized_count": sum(1 for m in members if m["authorized"]),
    }


def overview(core: ControllerCore) -> list[dict[str, Any]]:
    networks = sorted(core.directory.networks.values(), key=lambda n: n.created_s)
    return [network_view(core, n) for n in networks]


def one_network(core: ControllerCore, network_id: int) -> dict[str, Any]:
    return network_view(core, known_network(core.directory, network_id))


def fingerprint(core: ControllerCore) -> dict[str, Any]:
    """Per network, what its pages show that changes by itself (joins, authorizations, members coming and
    going online); cheap to compute every second and compare."""
    out: dict[str, Any] = {}
    for network in core.directory.networks.values():
        members = tuple(
            (m.node_id, m.authorized, m.identity is not None, m.ips, m.name, m.tags, m.bridge,
             core.online_since(m.node_id) is not None, m.last_seen_s)
            for m in core.directory.members(network.network_id)
        )
        out[format_network_id(network.network_id)] = hash((network.revision, network.name, members))
    return out
