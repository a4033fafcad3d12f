"""Exit nodes and subnet routers: the host forwards for a network, and an exit node masquerades.

A subnet router (`l2mesh join --subnet-router`) forwards between the
overlay and a LAN behind it, addresses kept: the LAN's hosts see members'
overlay addresses, and need a route back to the overlay through it. An exit
node (`--exit-node`) forwards too and masquerades what the network's members
send out through its other interfaces (its underlay), so the far side sees
the exit node's address, as from any NAT router.

The masquerade matches the members' overlay subnets as source rather than the
TAP as input interface: the kernel does not know the input interface in the
postrouting hook where NAT happens. Forwarding (net.ipv4.ip_forward, and
net.ipv6.conf.all.forwarding when the member has an IPv6 overlay address) is
held while a network needs it and put back afterwards (sysctl.py).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from l2mesh.edge.node.nftables import NftError, delete_table, load_table
from l2mesh.edge.node.sysctl import KernelSettings
from l2mesh.ids import format_network_id
from l2mesh.node.join_options import JoinOptions

IPV4_FORWARD = "net/ipv4/ip_forward"
IPV6_FORWARD = "net/ipv6/conf/all/forwarding"
log = logging.getLogger("l2mesh.forwarding")


@dataclass(frozen=True)
class ForwardingSetup:
    """What one network asks of the host: the TAP, the member's own overlay subnets and its roles."""

    tap_name: str
    overlay_subnets: tuple[str, ...]
    options: JoinOptions


class Forwarding:
    """Only the host-setup worker thread calls it."""

    def __init__(self, port: int, settings: KernelSettings) -> None:
        self.port = port
        self.settings = settings
        self.active: dict[int, ForwardingSetup] = {}

    def apply(self, network_id: int, setup: ForwardingSetup) -> None:
        """Make the host do what setup asks for this network (nothing, when it asks for no role)."""
        if self.active.get(network_id) == setup:
            return
        if not setup.options.forwards:
            self.remove(network_id)
            return
        owner = self._owner(network_id)
        wanted = [IPV4_FORWARD]
        if any(ipaddress.ip_network(s).version == 6 for s in setup.overlay_subnets):
            # A router's IPv6 ignores router advertisements unless accept_ra=2 (README says so).
            wanted.append(IPV6_FORWARD)
        # Held before anything is let go: a change of subnets must not blink forwarding off.
        try:
            for key in wanted:
                self.settings.hold(key, "1", owner)
        except OSError as exc:
            log.error("network %s: cannot turn on forwarding: %s", format_network_id(network_id), exc)
        self.settings.release(owner, [k for k in self.settings.held_by(owner) if k not in wanted])
        if setup.options.exit_node:
            try:
                load_table(self._table(network_id), _masquerade(setup))
            except NftError as exc:
                log.error("network %s: exit node without masquerade: %s", format_network_id(network_id), exc)
        else:
            self._drop_table(network_id)
        self.active[network_id] = setup
        log.info(
            "network %s: %s: forwarding%s", format_network_id(network_id), " and ".join(setup.options.roles),
            f", masquerading {', '.join(setup.overlay_subnets) or 'nothing yet'} out of other interfaces"
            if setup.options.exit_node else "",
        )

    def remove(self, network_id: int) -> None:
        setup = self.active.pop(network_id, None)
        if setup is None:
            return
        if setup.options.exit_node:
            self._drop_table(network_id)
        self.settings.release(self._owner(network_id))
        log.info("network %s: no longer %s", format_network_id(network_id), " or ".join(setup.options.roles))

    def close(self) -> None:
        for network_id in list(self.active):
            self.remove(network_id)

    def is_forwarding(self, network_id: int) -> bool:
        return network_id in self.active

    def _drop_table(self, network_id: int) -> None:
        try:
            delete_table(self._table(network_id))
        except NftError as exc:
            log.warning("%s", exc)

    def _table(self, network_id: int) -> str:
        return f"l2mesh_{self.port}_{network_id:016x}"

    @staticmethod
    def _owner(network_id: int) -> str:
        return f"forwarding {network_id:016x}"


def _masquerade(setup: ForwardingSetup) -> str:
    rules = []
    for version, keyword in ((4, "ip"), (6, "ip6")):
        subnets = [s for s in setup.overlay_subnets if ipaddress.ip_network(s).version == version]
        if subnets:
            rules.append(f'        {keyword} saddr {{ {", ".join(subnets)} }} oifname != "{setup.tap_name}" masquerade\n')
    return (
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        + "".join(rules)
        + "    }\n"
    )
