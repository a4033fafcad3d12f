"""Which multicast groups a TAP listens to, read from the kernel (the node's multicast subscriptions).

The link-layer multicast list (/proc/net/dev_mcast) already holds every
group the host's sockets joined on the interface: mDNS (01:00:5e:00:00:fb,
33:33:00:00:00:fb), IPv6 all-nodes and the solicited-node group of each
IPv6 address (so neighbour solicitations reach only the owner). Each IPv4
address on the TAP adds the ARP group ff:ff:ff:ff:ff:ff/<ip>, so ARP for it is
scoped to this member, as ZeroTier does.
"""

from __future__ import annotations

import socket
from pathlib import Path

from l2mesh.edge.node.netlink import RtNetlink, link_index, link_names
from l2mesh.switch.multicast import arp_group, group_key

DEV_MCAST = Path("/proc/net/dev_mcast")


def read_link_groups(path: Path = DEV_MCAST) -> dict[str, set[bytes]]:
    """Interface name -> multicast MACs it listens to."""
    groups: dict[str, set[bytes]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        fields = line.split()
        if len(fields) != 5 or len(fields[4]) != 12:
            continue
        try:
            mac = bytes.fromhex(fields[4])
        except ValueError:
            continue
        groups.setdefault(fields[1], set()).add(mac)
    return groups


class GroupWatcher:
    """Polls the kernel for each TAP's groups (cheap: one file read and one netlink dump per poll)."""

    def __init__(self) -> None:
        self._netlink = RtNetlink()

    def groups_of(self, link_groups: dict[str, set[bytes]], ifname: str) -> frozenset[bytes]:
        groups = {group_key(mac) for mac in link_groups.get(ifname, ())}
        for address in self._ipv4_addresses(ifname):
            groups.add(arp_group(address))
        return frozenset(groups)

    def _ipv4_addresses(self, ifname: str) -> list[bytes]:
        index = link_index(ifname)
        if index is None:
            return []
        try:
            return [socket.inet_aton(address) for _, address in self._netlink.ipv4_addresses(index)]
        except OSError:
            return []

    def local_ipv4_addresses(self, exclude: set[str]) -> list[str]:
        """This host's IPv4 addresses outside the given interfaces and loopback (candidate endpoints for peers)."""
        try:
            names = link_names()
            addresses = self._netlink.ipv4_addresses()
        except OSError:
            return []
        return [address for index, address in addresses if not address.startswith("127.") and names.get(index) not in exclude]

    def close(self) -> None:
        self._netlink.close()
