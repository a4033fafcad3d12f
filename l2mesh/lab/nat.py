"""Home routers doing NAT, and cutting UDP between two underlay addresses, with nftables inside lab namespaces.

    member (198.19.N.2) --lan-- home router (198.19.N.1 | 198.18.N.2) --wan-- router ("the Internet")

The home router masquerades the member's private /24 onto its WAN address:
plain `masquerade` keeps the source port where it can (endpoint-independent
mapping: a cone NAT, as most home routers), `masquerade random` picks a new
port per destination (symmetric: hole punching must fail). Like a real
router it has a WAN input firewall and forwards inbound traffic only for
connections the LAN opened: without that, Linux conntrack would keep an
entry for the first unsolicited punch packet and remap the punch.

With port_mapping, the router is ready for a port-mapping daemon (miniupnpd,
see portmap.py, started separately): the member gets a default route via
it (NAT-PMP talks to the default gateway), the router keeps empty chains
for miniupnpd's rules, and inbound traffic a mapping forwards is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from l2mesh.lab.errors import LabError
from l2mesh.lab.namespaces import UNDERLAY_NET, Lab, NetnsHost

HOME_NET = "198.19.0.0/16"  # members' private LANs behind home routers

_NAT_RULESET = """
table ip {table}_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        {masquerade_from}oifname "wan" masquerade{random}
    }}
}}
table inet {table}_filter {{
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


# Added to the ruleset above for port mapping. miniupnpd (nftables backend)
# writes its rules into chains that must exist, named in its config; the
# router's own chains jump to them, so a mapping's DNAT and miniupnpd's
# accept for it let inbound traffic through a forward policy (drop) that
# otherwise passes only connections the LAN opened.
_PORT_MAPPING_RULESET = """
table inet {table}_filter {{
    chain miniupnpd {{
    }}
    chain forward {{
        jump miniupnpd
    }}
    chain prerouting_miniupnpd {{
    }}
    chain postrouting_miniupnpd {{
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        jump prerouting_miniupnpd
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat - 10; policy accept;
        jump postrouting_miniupnpd
    }}
}}
"""


@dataclass(frozen=True)
class NatRouter:
    namespace: str
    public_ip: str  # its WAN address on the underlay
    symmetric: bool
    lan: int = 0  # N: its LAN is 198.19.N.0/24, its WAN 198.18.N.0/24
    port_mapping: bool = False  # ready for miniupnpd (portmap.py)

    @property
    def lan_net(self) -> str:
        return f"198.19.{self.lan}.0/24"

    @property
    def upstream_ip(self) -> str:
        """The Internet router's address on this router's WAN link."""
        return f"198.18.{self.lan}.1"


def table_prefix(lab: Lab) -> str:
    """nftables table names of a lab: its prefix as a word ("l2mt-" -> "l2mt")."""
    return lab.prefix.rstrip("-")


def add_nat_host(
    lab: Lab, role: str, symmetric: bool = False, lan: int | None = None, port_mapping: bool = False
) -> tuple[NetnsHost, NatRouter]:
    """A member namespace (198.19.N.2) behind its own home router hrN (198.18.N.2 on the underlay).

    port_mapping: ready the router for miniupnpd (nothing is started here) and
    give the member a default route via it, as a home LAN's DHCP would.
    """
    router = lab.require_router()
    lan = lab.allocate_lan(lan)
    home = lab.add_namespace(f"hr{lan}")
    member = lab.add_namespace(role)
    lab.add_link(home, "wan", f"198.18.{lan}.2/24", router, f"lan{lan}", f"198.18.{lan}.1/24")
    lab.ip("-n", home, "route", "add", UNDERLAY_NET, "via", f"198.18.{lan}.1")
    lab.add_link(member, "eth0", f"198.19.{lan}.2/24", home, "lan", f"198.19.{lan}.1/24")
    lab.ip("-n", member, "route", "add", UNDERLAY_NET, "via", f"198.19.{lan}.1")
    lab.sysctl(home, "net.ipv4.ip_forward=1")
    home_router = NatRouter(home, f"198.18.{lan}.2", symmetric, lan, port_mapping)
    # With port mapping only the LAN is masqueraded: miniupnpd's STUN check
    # of the router's own address must leave with its ports unchanged (a
    # symmetric `masquerade random` rewrites the router's own ports too).
    masquerade_from = f"ip saddr {home_router.lan_net} " if port_mapping else ""
    ruleset = _NAT_RULESET.format(
        table=table_prefix(lab), random=" random" if symmetric else "", masquerade_from=masquerade_from
    )
    if port_mapping:
        lab.ip("-n", member, "route", "add", "default", "via", f"198.19.{lan}.1")
        ruleset += _PORT_MAPPING_RULESET.format(table=table_prefix(lab))
    lab.nft(home, ruleset, f"hr{lan}")
    return NetnsHost(member, f"198.19.{lan}.2", f"198.19.{lan}.1", lan), home_router


def block_table(lab: Lab) -> str:
    return f"{table_prefix(lab)}_block"


def block_udp(lab: Lab, namespace: str, a_ip: str, b_ip: str) -> str:
    """Drop UDP between two addresses (both directions, counted) where namespace forwards it; the table's name.

    Only forwarded packets: traffic to the namespace's own addresses (a
    controller running there, say) still passes.
    """
    table = block_table(lab)
    lab.nft(namespace, (
        f"table inet {table} {{\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter - 10; policy accept;\n"
        f"        ip saddr {a_ip} ip daddr {b_ip} meta l4proto udp counter drop\n"
        f"        ip saddr {b_ip} ip daddr {a_ip} meta l4proto udp counter drop\n"
        f"    }}\n"
        f"}}\n"
    ), "block")
    return table


def unblock_udp(lab: Lab, namespace: str) -> None:
    """Remove block_udp's table; a LabError if it is still there afterwards."""
    table = block_table(lab)
    lab.run_in(namespace, ["nft", "delete", "table", "inet", table], check=False)
    if lab.run_in(namespace, ["nft", "list", "table", "inet", table], check=False).returncode == 0:
        raise LabError(f"could not delete nft table inet {table} in {namespace}")
