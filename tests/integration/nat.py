"""Members behind home routers: a namespace per router doing NAT with nftables, as DESIGN.md describes.

    member (198.19.N.2) --lan-- home router hrN (198.19.N.1 | 198.18.N.2) --wan-- rt ("the Internet")

The router masquerades the member's private /24 onto its WAN address: plain
`masquerade` keeps the source port where it can (endpoint-independent
mapping: a cone NAT, as most home routers), `masquerade random` picks a new
port per destination (symmetric: hole punching must fail). Like a real
router it has a WAN input firewall and forwards inbound traffic only for
connections the LAN opened: without that, Linux conntrack would keep an
entry for the first unsolicited punch packet and remap the punch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.integration.topology import Host, Topology

_RULESET = """
table ip l2mt_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade{random}
    }}
}}
table inet l2mt_filter {{
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        iifname "lan" accept
        ct state established,related accept
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" accept
    }}
}}
"""


@dataclass
class NatRouter:
    namespace: str
    public_ip: str
    symmetric: bool


def add_nat_host(topology: Topology, name: str, symmetric: bool = False) -> tuple[Host, NatRouter]:
    """A member behind its own home router; returns the member and its router."""
    lan = topology._next_lan
    topology._next_lan += 1
    router = topology.add_namespace(f"hr{lan}")
    member = topology.add_namespace(name)
    rt = topology.router
    topology.ip("link", "add", "wan", "netns", router, "type", "veth", "peer", "name", f"lan{lan}", "netns", rt)
    topology.ip("-n", router, "addr", "add", f"198.18.{lan}.2/24", "dev", "wan")
    topology.ip("-n", router, "link", "set", "wan", "up")
    topology.ip("-n", rt, "addr", "add", f"198.18.{lan}.1/24", "dev", f"lan{lan}")
    topology.ip("-n", rt, "link", "set", f"lan{lan}", "up")
    topology.ip("-n", router, "route", "add", "198.18.0.0/15", "via", f"198.18.{lan}.1")
    topology.ip("link", "add", "eth0", "netns", member, "type", "veth", "peer", "name", "lan", "netns", router)
    topology.ip("-n", member, "addr", "add", f"198.19.{lan}.2/24", "dev", "eth0")
    topology.ip("-n", member, "link", "set", "eth0", "up")
    topology.ip("-n", router, "addr", "add", f"198.19.{lan}.1/24", "dev", "lan")
    topology.ip("-n", router, "link", "set", "lan", "up")
    topology.ip("-n", member, "route", "add", "198.18.0.0/15", "via", f"198.19.{lan}.1")
    topology.run_in(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    rules = topology.work_dir / f"hr{lan}.nft"
    rules.write_text(_RULESET.format(random=" random" if symmetric else ""))
    topology.run_in(router, ["nft", "-f", str(rules)])
    host = Host(topology, name, member, f"198.19.{lan}.2", topology.work_dir / name)
    host.identity = json.loads(host.l2mesh("id", "--json").stdout)
    topology.hosts[name] = host
    return host, NatRouter(router, f"198.18.{lan}.2", symmetric)


def block_udp_between(topology: Topology, a: NatRouter, b: NatRouter) -> None:
    """Cut direct UDP between two routers' WAN addresses in "the Internet" (their controller traffic still passes)."""
    rules = topology.work_dir / "block.nft"
    rules.write_text(
        "table inet l2mt_block {\n"
        "    chain forward {\n"
        "        type filter hook forward priority filter - 10; policy accept;\n"
        f"        ip saddr {a.public_ip} ip daddr {b.public_ip} udp dport 1-65535 drop\n"
        f"        ip saddr {b.public_ip} ip daddr {a.public_ip} udp dport 1-65535 drop\n"
        "    }\n"
        "}\n"
    )
    topology.run_in(topology.router, ["nft", "-f", str(rules)])


def unblock(topology: Topology) -> None:
    topology.run_in(topology.router, ["nft", "delete", "table", "inet", "l2mt_block"])
