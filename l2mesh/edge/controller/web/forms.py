"""HTML form fields -> the admin change documents the JSON API takes (l2mesh.controller.admin validates them).

Forms post application/x-www-form-urlencoded (no multipart: nothing here
uploads files), parsed with the standard library. Lists are one item per
line (or comma-separated); an unchecked checkbox is absent, so a settings
form that always carries its checkboxes turns absence into false.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from l2mesh.controller.model import ValidationError

MAX_FORM_FIELDS = 64
_ITEM_SEPARATORS = re.compile(r"[\s,]+")


def parse_form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("the form could not be read") from None
    return dict(pairs)


def items(text: str) -> list[str]:
    """'a, b\\nc' -> ['a', 'b', 'c']: CIDRs, addresses, routes and tags hold no spaces or commas."""
    return [item for item in _ITEM_SEPARATORS.split(text.strip()) if item]


def _integer(text: str, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"{what} must be a whole number") from None


def new_network_doc(form: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": form.get("name", ""), "pools": items(form.get("pools", ""))}
    return doc


def network_settings_doc(form: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": form.get("name", ""),
        "pools": items(form.get("pools", "")),
        "routes": items(form.get("routes", "")),
        "dns_domain": form.get("dns_domain", "").strip(),
        "broadcast": "broadcast" in form,
        "private": "private" in form,
        "multicast_limit": _integer(form.get("multicast_limit", ""), "multicast limit"),  # empty: unlimited
    }
    mtu = _integer(form.get("mtu", ""), "MTU")
    if mtu is not None:
        doc["mtu"] = mtu
    return doc


def member_details_doc(form: dict[str, str]) -> dict[str, Any]:
    return {
        "name": form.get("name", "").strip(),
        "ips": items(form.get("ips", "")),
        "tags": items(form.get("tags", "")),
        "bridge": "bridge" in form,
    }
