"""nftables tables the node daemon owns (the exit node's masquerade, the default route's mark restore).

Through the `nft` program, fed a script on stdin: it is the interface
nftables keeps stable (libnftables' Python binding ships with Debian's
python3-nftables, not on PyPI), and a script applies atomically, so a table
is replaced whole or not at all. Each table is named l2mesh_<port>_..., one
per purpose, and deleting it takes everything it held.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from l2mesh.errors import L2meshError

NFT_TIMEOUT_S = 5.0
_TABLE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class NftError(L2meshError):
    """nft is missing or refused a ruleset."""


def _nft(script: str) -> subprocess.CompletedProcess[str]:
    nft = shutil.which("nft")
    if nft is None:
        raise NftError("nft (nftables) is not installed: apt-get install nftables")
    try:
        return subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NftError(f"nft did not finish within {NFT_TIMEOUT_S:g} s") from None


def load_table(name: str, body: str) -> None:
    """Create or replace table `inet NAME` with body (its chains), in one transaction."""
    _check(name)
    # Declaring the table first makes the delete valid whether or not it exists yet.
    result = _nft(f"table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n{body}}}\n")
    if result.returncode != 0:
        raise NftError(f"nft refused table {name}: {_first_line(result.stderr)}")


def delete_table(name: str) -> None:
    """Remove table `inet NAME` if it is there."""
    _check(name)
    result = _nft(f"table inet {name}\ndelete table inet {name}\n")
    if result.returncode != 0:
        raise NftError(f"nft could not delete table {name}: {_first_line(result.stderr)}")


def _check(name: str) -> None:
    if not _TABLE_NAME_RE.fullmatch(name):
        raise NftError(f"bad nftables table name {name!r}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no reason given")


def tables_named(prefix: str) -> list[str]:
    """The inet tables whose names start with prefix (what a killed daemon may have left)."""
    nft = shutil.which("nft")
    if nft is None:
        return []
    try:
        result = subprocess.run([nft, "list", "tables", "inet"], capture_output=True, text=True, timeout=NFT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return []
    names = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("table inet ")]
    return [name for name in names if name.startswith(prefix)]
