"""Names in a network's DNS domain: what a domain may be, its default, and the label a member's name becomes.

Shared by the controller (which validates the domain an admin sets and signs
the one in force into configs) and the members (which answer for it).
RFC 1123 host names: labels of letters, digits and hyphens, 1-63 characters,
not starting or ending with a hyphen, 253 characters in all; compared in
lower case, as DNS compares names.
"""

from __future__ import annotations

import re

from l2mesh.errors import L2meshError
from l2mesh.ids import format_network_id

DEFAULT_DOMAIN_SUFFIX = "l2mesh"
MAX_LABEL_CHARS = 63
MAX_DOMAIN_CHARS = 253
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NOT_LABEL_CHARS_RE = re.compile(r"[^a-z0-9]+")


class DnsNameError(L2meshError):
    """A DNS domain that is not a valid host name."""


def normalize_domain(text: object) -> str:
    """A DNS domain in canonical form (lower case, no trailing dot), or DnsNameError in one line."""
    if not isinstance(text, str):
        raise DnsNameError(f"invalid DNS domain {text!r}: expected a name such as lab.l2mesh")
    domain = text.strip().lower().removesuffix(".")
    if not domain or len(domain) > MAX_DOMAIN_CHARS:
        raise DnsNameError(f"invalid DNS domain {text!r}: 1 to {MAX_DOMAIN_CHARS} characters")
    for label in domain.split("."):
        if not _LABEL_RE.fullmatch(label):
            raise DnsNameError(
                f"invalid DNS domain {text!r}: label {label!r} is not 1-{MAX_LABEL_CHARS} letters, digits or inner hyphens"
            )
    return domain


def host_label(name: str) -> str | None:
    """The DNS label a member's (or network's) name answers as: lower case, every run of other characters one
    hyphen ("Build Server #2" -> "build-server-2"); None when nothing is left."""
    label = _NOT_LABEL_CHARS_RE.sub("-", name.lower()).strip("-")[:MAX_LABEL_CHARS].strip("-")
    return label or None


def default_dns_domain(network_name: str, network_id: int) -> str:
    """`<network name>.l2mesh` (as a label), or `<network id>.l2mesh` for a name with no letters or digits."""
    return f"{host_label(network_name) or format_network_id(network_id)}.{DEFAULT_DOMAIN_SUFFIX}"
