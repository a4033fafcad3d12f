"""A node's (or controller's) identity file in its state directory: created once, exclusively, then only read.

Two processes started together (`l2mesh id` and `l2mesh daemon`, or a
provisioning script and a unit) must end up with one identity: the file is
written in full under a temporary name and linked into place, which fails
for the second writer, who then loads the winner's keys.
"""

from __future__ import annotations

from pathlib import Path

from l2mesh.edge.statefile import atomic_write_json, create_exclusively, ensure_state_dir, json_bytes, read_json
from l2mesh.errors import IdentityError, StateError
from l2mesh.identity import Identity

IDENTITY_FILE = "identity.json"


def identity_path(state_dir: Path) -> Path:
    return state_dir / IDENTITY_FILE


def save_identity(identity: Identity, state_dir: Path) -> Path:
    """Write (or overwrite) the identity file, mode 0600."""
    ensure_state_dir(state_dir)
    path = identity_path(state_dir)
    atomic_write_json(path, identity.to_private_json())
    return path


def load_identity(state_dir: Path) -> Identity:
    return load_identity_file(identity_path(state_dir))


def load_identity_file(path: Path) -> Identity:
    """An identity file as a state directory holds it (`l2mesh-ctl serve --identity FILE`)."""
    try:
        doc = read_json(path)
    except StateError as exc:
        raise IdentityError(f"identity: {exc}") from None
    try:
        return Identity.from_private_json(doc)
    except IdentityError as exc:
        raise IdentityError(f"identity file {path} is corrupted: {exc}") from None


def load_or_create_identity(state_dir: Path) -> Identity:
    """The identity in state_dir; a new one if there is none. Racing callers all get the same one."""
    path = identity_path(state_dir)
    if path.exists():
        return load_identity(state_dir)
    ensure_state_dir(state_dir)
    identity = Identity.generate()
    if create_exclusively(path, json_bytes(identity.to_private_json())):
        return identity
    return load_identity(state_dir)
