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
from l2mesh.netconf import NetworkConfig

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
        self.hosts = hosts  # label -> addresses
        self.serial = serial  # the config's revision: the zone's SOA serial

    @classmethod
    def from_config(cls, config: NetworkConfig) -> NameTable:
        hosts: dict[str, list[str]] = {}
        for member in config.members:
            addresses = [str(ipaddress.ip_interface(ip).ip) for ip in member.ips]
            labels = {format_node_id(member.node_id)}
            label = host_label(member.name)
            if label is not None:
                labels.add(label)
            for name in labels:
                hosts.setdefault(name, []).extend(addresses)
        return cls(
            config.effective_dns_domain,
            {name: tuple(sorted(set(addrs), key=_address_order)) for name, addrs in hosts.items()},
            config.revision,
        )

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
        found = tuple(a for a in addresses if ipaddress.ip_address(a).version in wanted)
        # A name that exists without an address of that type: NOERROR and no answer (NODATA), with the SOA.
        return NameAnswer(Rcode.NOERROR, found, soa=not found)


def _address_order(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return address.version, int(address)
