"""A network's names, sans-IO: who answers as what in the network's DNS domain, and the answer to a question.

Built from the signed config whenever one is applied, so a rename, a new
address, a deauthorization or a deletion is answered from the next query on.
Every member listed in the config answers as `<node id>.<domain>` and, when
it has a name, as `<name as a DNS label>.<domain>`; members who share a name
answer together (every address). The edge (l2mesh/edge/node/dns_responder.py)
reads and writes the DNS wire format; this decides what to say.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from l2mesh.dns_names import host_label
from l2mesh.ids import format_node_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.netconf_delta import MemberChanges

# Short, so that resolvers that cache (systemd-resolved) follow renames and
# deauthorizations within a second, as members do.
ANSWER_TTL_S = 1


class Rcode(enum.Enum):
    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class NameAnswer:
    rcode: Rcode
    addresses: tuple[str, ...] = ()  # for A or AAAA (or both, for ANY), sorted
    soa: bool = False  # whether the zone's SOA belongs in the reply (apex SOA question; negative answers)


REFUSED = NameAnswer(Rcode.REFUSED)


class NameTable:
    def __init__(self, domain: str, hosts: dict[str, tuple[str, ...]], serial: int = 0) -> None:
        self.domain = domain  # lower case, no trailing dot
        # label -> addresses, sorted; an address twice when two members sharing the name both list it
        # (so taking one member out leaves the other's), answered once.
        self.hosts = hosts
        self.serial = serial  # the config's revision: the zone's SOA serial
        self._holders: dict[str, int] = {}  # how many members answer to a label, for those with more than one
        self.config: NetworkConfig | None = None  # the config the table says, when built from one

    @classmethod
    def from_config(cls, config: NetworkConfig) -> NameTable:
        hosts: dict[str, list[str]] = {}
        holders: dict[str, int] = {}
        for member in config.members:
            addresses = _addresses(member)
            for name in _labels(member):
                held = hosts.get(name)
                if held is None:
                    hosts[name] = list(addresses)
                else:
                    held.extend(addresses)
                    holders[name] = holders.get(name, 1) + 1
        table = cls(config.effective_dns_domain, {name: _sorted(addrs) for name, addrs in hosts.items()}, config.revision)
        table._holders = holders
        table.config = config
        return table

    def apply(self, changes: MemberChanges) -> None:
        """Follow a delta made from the config the table says: in time for the members it changed, not
        for the whole member list (a rename on a 10,000-member network answers at once)."""
        assert self.config is not None and changes.applies_to(self.config), "a delta from another config"
        config = changes.config
        for member in changes.before:
            self._take_out(member)
        for member in changes.changed:
            self._put_in(member)
        self.domain = config.effective_dns_domain
        self.serial = config.revision
        self.config = config

    def _put_in(self, member: MemberConfig) -> None:
        addresses = _addresses(member)
        for name in _labels(member):
            held = self.hosts.get(name)
            if held is None:
                self.hosts[name] = _sorted(list(addresses))
            else:
                self.hosts[name] = _sorted([*held, *addresses])
                self._holders[name] = self._holders.get(name, 1) + 1

    def _take_out(self, member: MemberConfig) -> None:
        addresses = _addresses(member)
        for name in _labels(member):
            count = self._holders.pop(name, 1)
            if count == 1:
                del self.hosts[name]
                continue
            if count > 2:
                self._holders[name] = count - 1
            remaining = list(self.hosts[name])
            for address in addresses:
                remaining.remove(address)
            self.hosts[name] = tuple(remaining)

    def lookup(self, qname: str, qtype: str) -> NameAnswer:
        """The answer for a question: qname as text (any case, trailing dot or not), qtype by name ("A", "AAAA", ...)."""
        name = qname.lower().removesuffix(".")
        if name == self.domain:
            # The zone's apex exists (it has an SOA) but holds no addresses.
            return NameAnswer(Rcode.NOERROR, soa=True)
        label, dot, rest = name.partition(".")
        if not dot or rest != self.domain and not rest.endswith("." + self.domain):
            return REFUSED  # not ours: a resolver asking us for the world gets told so, not silence
        if rest != self.domain or label not in self.hosts:
            return NameAnswer(Rcode.NXDOMAIN, soa=True)  # nothing lives below a member's name
        addresses = self.hosts[label]
        wanted = {"A": (4,), "AAAA": (6,), "ANY": (4, 6)}.get(qtype.upper(), ())
        found = tuple(dict.fromkeys(a for a in addresses if ipaddress.ip_address(a).version in wanted))
        # A name that exists without an address of that type: NOERROR and no answer (NODATA), with the SOA.
        return NameAnswer(Rcode.NOERROR, found, soa=not found)


def _labels(member: MemberConfig) -> set[str]:
    labels = {format_node_id(member.node_id)}
    label = host_label(member.name)
    if label is not None:
        labels.add(label)
    return labels


def _addresses(member: MemberConfig) -> tuple[str, ...]:
    # The config holds canonical CIDRs (netconf.py normalizes them): the address is what precedes the slash,
    # as ipaddress would write it (parsing each was most of the cost of a table of thousands).
    return tuple(dict.fromkeys(ip.partition("/")[0] for ip in member.ips))


def _sorted(addresses: list[str]) -> tuple[str, ...]:
    return tuple(sorted(addresses, key=_address_order)) if len(addresses) > 1 else tuple(addresses)


def _address_order(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return address.version, int(address)
