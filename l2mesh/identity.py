"""A node's long-term identity: an X25519 key pair for Noise and an Ed25519 key pair for signatures.

The node id is the first 40 bits of a BLAKE2b hash of both public keys. An
id alone is never trusted: peers authenticate each other by the full public
keys that controller-signed configs list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.signing

from l2mesh.errors import IdentityError
from l2mesh.ids import format_node_id, is_reserved_node_id

KEY_BYTES = 32
_NODE_ID_PERSONAL = b"l2mesh-node-id\0\0"


def node_id_from_public_keys(x25519_public: bytes, ed25519_public: bytes) -> int:
    digest = hashlib.blake2b(x25519_public + ed25519_public, digest_size=5, person=_NODE_ID_PERSONAL).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class PublicIdentity:
    """What a node may know of another: its public keys, and the id they hash to."""

    x25519_public: bytes
    ed25519_public: bytes

    @property
    def node_id(self) -> int:
        return node_id_from_public_keys(self.x25519_public, self.ed25519_public)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(self.ed25519_public).verify(message, signature)
        except Exception:
            return False
        return True

    def to_json(self) -> dict[str, str]:
        return {
            "id": format_node_id(self.node_id),
            "x25519": self.x25519_public.hex(),
            "ed25519": self.ed25519_public.hex(),
        }

    @classmethod
    def from_json(cls, doc: object) -> "PublicIdentity":
        """Parse {"x25519": hex, "ed25519": hex[, "id": hex]}; an "id" that does not match the keys is refused."""
        if not isinstance(doc, dict):
            raise IdentityError("public identity must be an object")
        x_pub = _hex_key(doc.get("x25519"), "x25519")
        ed_pub = _hex_key(doc.get("ed25519"), "ed25519")
        ident = cls(x_pub, ed_pub)
        claimed = doc.get("id")
        if claimed is not None and claimed != format_node_id(ident.node_id):
            raise IdentityError(f"public identity claims id {claimed!r} but its keys hash to {format_node_id(ident.node_id)}")
        return ident


@dataclass(frozen=True)
class Identity:
    """A node's own identity, with private keys."""

    x25519_private: bytes
    ed25519_seed: bytes

    @classmethod
    def generate(cls) -> "Identity":
        while True:
            ident = cls(nacl.bindings.randombytes(KEY_BYTES), nacl.bindings.randombytes(KEY_BYTES))
            if not is_reserved_node_id(ident.node_id):
                return ident

    @property
    def x25519_public(self) -> bytes:
        return nacl.bindings.crypto_scalarmult_base(self.x25519_private)

    @property
    def ed25519_public(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self.ed25519_seed).verify_key)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.x25519_public, self.ed25519_public)

    @property
    def node_id(self) -> int:
        return self.public.node_id

    def sign(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.ed25519_seed).sign(message).signature

    def to_private_json(self) -> dict[str, str]:
        """What the identity file holds: the private keys, and the public parts and id for a reader's eyes."""
        return {
            "id": format_node_id(self.node_id),
            "x25519_private": self.x25519_private.hex(),
            "ed25519_seed": self.ed25519_seed.hex(),
            "x25519": self.x25519_public.hex(),
            "ed25519": self.ed25519_public.hex(),
        }

    @classmethod
    def from_private_json(cls, doc: object) -> "Identity":
        """Parse what to_private_json() wrote; IdentityError says what is wrong with it."""
        if not isinstance(doc, dict):
            raise IdentityError("not an object")
        ident = cls(
            _hex_key(doc.get("x25519_private"), "x25519_private"),
            _hex_key(doc.get("ed25519_seed"), "ed25519_seed"),
        )
        # The stored public parts and id are redundant; a mismatch means the file was altered.
        stored = {"id": format_node_id(ident.node_id), "x25519": ident.x25519_public.hex(), "ed25519": ident.ed25519_public.hex()}
        for name, expected in stored.items():
            if doc.get(name) not in (None, expected):
                raise IdentityError(f"{name} does not match the private keys")
        return ident


def _hex_key(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise IdentityError(f"{name} is missing")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise IdentityError(f"{name} is not hex") from None
    if len(raw) != KEY_BYTES:
        raise IdentityError(f"{name} must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw
