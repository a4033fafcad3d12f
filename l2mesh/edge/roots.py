"""Roots at the edge, for nodes and controllers alike: names resolved once, keys pinned on first use on disk."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from l2mesh.edge.statefile import atomic_write_json, read_json
from l2mesh.errors import L2meshError, StateError
from l2mesh.identity import PublicIdentity
from l2mesh.netconf import NetconfError, parse_endpoint
from l2mesh.ports import DEFAULT_NODE_PORT
from l2mesh.root_spec import RootSpec
from l2mesh.wire.common import Endpoint

ROOTS_FILE = "roots.json"  # keys of roots fetched from their address, pinned on first use, by address


def endpoint_text(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_endpoint(text: str, default_port: int, what: str) -> Endpoint:
    """HOST:PORT (or HOST, default_port) of a controller or root -> (IP, port); names are resolved once, here."""
    try:
        return parse_endpoint(text)
    except NetconfError:
        pass
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise L2meshError(f"invalid {what} address {text!r}: expected HOST:PORT") from None
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        raise L2meshError(f"cannot resolve {what} host {host!r}") from None
    return str(infos[0][4][0]), port


def load_root_pins(state_dir: Path) -> dict[Endpoint, PublicIdentity]:
    path = state_dir / ROOTS_FILE
    if not path.exists():
        return {}
    try:
        return {parse_endpoint(k): PublicIdentity.from_json(v) for k, v in read_json(path)["pinned"].items()}
    except Exception as exc:
        raise StateError(f"{path} is corrupted ({exc}); remove it to pin the roots again") from None


def save_root_pin(state_dir: Path, endpoint: Endpoint, identity: PublicIdentity) -> None:
    pins = load_root_pins(state_dir)
    pins[endpoint] = identity
    atomic_write_json(state_dir / ROOTS_FILE, {"pinned": {endpoint_text(e): i.to_json() for e, i in sorted(pins.items())}})


async def resolved_roots(
    specs: list[RootSpec], state_dir: Path, log: logging.Logger
) -> AsyncIterator[tuple[Endpoint, int | None, PublicIdentity | None]]:
    """Each root given: its address resolved, the id it must have, and its keys if pinned before.

    A root whose name does not resolve is logged and left out: the others still serve.
    """
    pins = load_root_pins(state_dir)
    for spec in specs:
        try:
            endpoint = await resolve_endpoint(f"{spec.host}:{spec.port}", DEFAULT_NODE_PORT, "root")
        except L2meshError as exc:
            log.error("%s; going on without it", exc)
            continue
        yield endpoint, spec.expected_id, pins.get(endpoint)
