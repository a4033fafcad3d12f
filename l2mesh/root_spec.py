"""How roots are named to nodes and controllers: `ID@HOST:PORT`, or `HOST:PORT` (keys pinned on first use).

The same list comes from `--root` (repeatable) or the L2MESH_ROOTS variable
(comma- or space-separated). Host names are resolved by the edge, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from l2mesh.errors import L2meshError
from l2mesh.ids import format_node_id, parse_node_id

ROOTS_ENV = "L2MESH_ROOTS"

_HOST_PORT_RE = re.compile(r"(\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>[0-9]{1,5})")


@dataclass(frozen=True)
class RootSpec:
    host: str
    port: int
    expected_id: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = f"{format_node_id(self.expected_id)}@" if self.expected_id is not None else ""
        return f"{prefix}{host}:{self.port}"


def parse_root_spec(text: str) -> RootSpec:
    """`ID@HOST:PORT` or `HOST:PORT`; L2meshError with a one-line reason otherwise."""
    text = text.strip()
    expected_id = None
    where = text
    if "@" in text:
        id_text, _, where = text.partition("@")
        try:
            expected_id = parse_node_id(id_text)
        except L2meshError:
            raise L2meshError(f"invalid root {text!r}: {id_text!r} is not a node id (10 hex digits)") from None
    match = _HOST_PORT_RE.fullmatch(where)
    if match is None:
        raise L2meshError(f"invalid root {text!r}: expected ID@HOST:PORT or HOST:PORT")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise L2meshError(f"invalid root {text!r}: port {port} out of range 1..65535")
    return RootSpec(match["v6"] or match["host"], port, expected_id)


def parse_root_list(items: list[str] | None, env_value: str | None) -> list[RootSpec]:
    """--root values if any were given, else the environment's list; duplicates dropped, order kept."""
    texts = list(items or [])
    if not texts and env_value:
        texts = [t for t in re.split(r"[,\s]+", env_value) if t]
    specs: list[RootSpec] = []
    for text in texts:
        spec = parse_root_spec(text)
        if spec not in specs:
            specs.append(spec)
    return specs
