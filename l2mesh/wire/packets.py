"""Outer packets: what one UDP datagram between two l2mesh nodes (or a node and a controller) holds.

The first byte names the packet type. Handshakes follow Noise IK; transport
packets carry the receiver's session index and the 64-bit counter that is
the AEAD nonce; fragments split one sealed transport packet that would not
fit the underlay; relay envelopes let the controller forward ciphertext
between members that have no direct path; identity look-ups fetch the
public keys behind a node id (verified against the id's hash).

PROTOCOL_VERSION 2 added mac1/mac2 to both handshake packets and the
COOKIE_REPLY packet (l2mesh/crypto/cookie.py: cheap screening before any
Diffie-Hellman, after WireGuard's cookie MACs). The version is mixed into
the Noise prologue, and the handshake packets changed length: a version 1
peer refuses our initiations as malformed (counted, dropped) and drops a
cookie reply as an unknown packet type; we refuse its 116-byte initiations
as malformed. Version 1 and 2 nodes cannot open sessions with each other:
upgrade every member, controller and root together.
"""

from __future__ import annotations

import enum
import struct

import construct as c

from l2mesh.wire.common import NodeIdField


class PacketType(enum.IntEnum):
    HANDSHAKE_INIT = 1
    HANDSHAKE_RESPONSE = 2
    TRANSPORT = 3
    FRAGMENT = 4
    RELAY = 5
    IDENTITY_REQUEST = 6
    IDENTITY_RESPONSE = 7
    COOKIE_REPLY = 8


PROTOCOL_VERSION = 2


NOISE_KEY_BYTES = 32
AEAD_TAG_BYTES = 16
TIMESTAMP_BYTES = 12
MAC_BYTES = 16
XNONCE_BYTES = 24
COOKIE_BYTES = 16

HandshakeInit = "HandshakeInit" / c.Struct(
    "type" / c.Const(PacketType.HANDSHAKE_INIT, c.Int8ub),
    c.Padding(3),
    # The index the responder puts in packets it sends back to us.
    "sender_index" / c.Int32ul,
    # Noise IK message 1: e, es, s (encrypted), ss, payload (an encrypted
    # TAI64N timestamp the responder uses to refuse replayed initiations).
    "ephemeral" / c.Bytes(NOISE_KEY_BYTES),
    "encrypted_static" / c.Bytes(NOISE_KEY_BYTES + AEAD_TAG_BYTES),
    "encrypted_timestamp" / c.Bytes(TIMESTAMP_BYTES + AEAD_TAG_BYTES),
    # Outside Noise. mac1: keyed by the responder's static public key, over
    # every byte before it; checked before any DH. mac2: keyed by a cookie the
    # responder gave this source address, over every byte before it; zeros
    # when we hold no fresh cookie. Only required while the responder is under load.
    "mac1" / c.Bytes(MAC_BYTES),
    "mac2" / c.Bytes(MAC_BYTES),
    c.Terminated,
)
"""Initiator -> responder: opens a session (Noise IK message 1, then mac1 and mac2). 148 bytes."""

HANDSHAKE_INIT_BYTES = 148

HandshakeResponse = "HandshakeResponse" / c.Struct(
    "type" / c.Const(PacketType.HANDSHAKE_RESPONSE, c.Int8ub),
    c.Padding(3),
    "sender_index" / c.Int32ul,
    # Echoes the initiator's sender_index so it finds its pending handshake.
    "receiver_index" / c.Int32ul,
    # Noise IK message 2: e, ee, se, empty payload (its tag confirms the keys).
    "ephemeral" / c.Bytes(NOISE_KEY_BYTES),
    "encrypted_empty" / c.Bytes(AEAD_TAG_BYTES),
    # As in HandshakeInit, keyed by the initiator's static public key: a forged
    # response costs the initiator no DH. mac2 carries a cookie the initiator
    # gave us, if any (no cookie reply ever answers a response).
    "mac1" / c.Bytes(MAC_BYTES),
    "mac2" / c.Bytes(MAC_BYTES),
    c.Terminated,
)
"""Responder -> initiator: completes the session (Noise IK message 2, then mac1 and mac2). 92 bytes."""

HANDSHAKE_RESPONSE_BYTES = 92

CookieReply = "CookieReply" / c.Struct(
    "type" / c.Const(PacketType.COOKIE_REPLY, c.Int8ub),
    c.Padding(3),
    # The sender_index of the initiation this answers: finds the pending handshake.
    "receiver_index" / c.Int32ul,
    "nonce" / c.Bytes(XNONCE_BYTES),
    # XChaCha20-Poly1305 of the cookie, keyed by HASH("cookie--" || responder
    # static public), with the initiation's mac1 as associated data: only who
    # sent that initiation (and knows the key) can use it.
    "encrypted_cookie" / c.Bytes(COOKIE_BYTES + AEAD_TAG_BYTES),
    c.Terminated,
)
"""Responder under load -> initiator: retry with mac2 keyed by this cookie (bound to your address). 64 bytes.

Smaller than the initiation it answers, so a spoofed source cannot use it
to amplify.
"""

TransportHeader = "TransportHeader" / c.Struct(
    "type" / c.Const(PacketType.TRANSPORT, c.Int8ub),
    c.Padding(3),
    # Chosen by the receiver during the handshake: finds the keys in O(1).
    "receiver_index" / c.Int32ul,
    # The AEAD nonce; also what the replay window checks.
    "counter" / c.Int64ul,
)
"""Prefix of every transport packet; the ChaCha20-Poly1305 ciphertext of one inner message follows."""

TRANSPORT_HEADER_BYTES = 16

Transport = "Transport" / c.Struct(
    "type" / c.Const(PacketType.TRANSPORT, c.Int8ub),
    c.Padding(3),
    "receiver_index" / c.Int32ul,
    "counter" / c.Int64ul,
    "ciphertext" / c.GreedyBytes,
    c.Check(lambda ctx: len(ctx.ciphertext) >= AEAD_TAG_BYTES),
)
"""A whole transport packet: TransportHeader's fields, then at least an AEAD tag of ciphertext."""

Fragment = "Fragment" / c.Struct(
    "type" / c.Const(PacketType.FRAGMENT, c.Int8ub),
    "index" / c.Int8ub,
    "count" / c.Int8ub,
    c.Padding(1),
    # Together these name the sealed transport packet being carried.
    "receiver_index" / c.Int32ul,
    "counter" / c.Int64ul,
    "chunk" / c.GreedyBytes,
)
"""One piece of a sealed transport packet too large for one datagram; reassembled before decryption."""

FRAGMENT_HEADER_BYTES = 16
MAX_FRAGMENTS = 64

RelayEnvelope = "RelayEnvelope" / c.Struct(
    "type" / c.Const(PacketType.RELAY, c.Int8ub),
    # Bounded so two relays can never bounce a packet between them forever.
    "hops" / c.Int8ub,
    "destination" / NodeIdField,
    "source" / NodeIdField,
    # An outer packet for the destination (handshake, transport, fragment): the
    # relay forwards it as is, it never holds the keys to open it.
    "packet" / c.GreedyBytes,
)
"""Member -> controller -> member: end-to-end encrypted traffic when no direct path works.

The hot paths (the member's send and receive, the controller's forwarding)
pack and unpack the 12-byte header with RELAY_HEADER below; this is its
definition, and tests/unit/test_wire.py proves the two byte-identical.
"""

RELAY_HEADER_BYTES = 12
MAX_RELAY_HOPS = 2

IdentityRequest = "IdentityRequest" / c.Struct(
    "type" / c.Const(PacketType.IDENTITY_REQUEST, c.Int8ub),
    c.Padding(3),
    "node_id" / NodeIdField,
    c.Terminated,
)
"""Asks the node at an address for its public keys (a node joining a network asks its controller).

node_id ANY_NODE_ID asks whoever answers there: how a root given only as
HOST:PORT is pinned on first use.
"""

ANY_NODE_ID = 0

IdentityResponse = "IdentityResponse" / c.Struct(
    "type" / c.Const(PacketType.IDENTITY_RESPONSE, c.Int8ub),
    c.Padding(3),
    "x25519" / c.Bytes(NOISE_KEY_BYTES),
    "ed25519" / c.Bytes(NOISE_KEY_BYTES),
    c.Terminated,
)
"""The public keys; the asker checks they hash to the node id it wanted before trusting them."""

# Hot-path equivalents of TransportHeader, Fragment's header and
# RelayEnvelope's header (same bytes; tests/unit/test_wire.py proves it). Building a construct object per frame
# costs more than the encryption of the frame.
TRANSPORT_HEADER = struct.Struct("<B3xIQ")
FRAGMENT_HEADER = struct.Struct("<BBBxIQ")
RELAY_HEADER = struct.Struct(">BB5s5s")
COOKIE_REPLY_HEADER = struct.Struct("<B3xI")  # CookieReply's type and receiver_index; nonce and cookie follow

PACKETS: dict[PacketType, c.Construct] = {
    PacketType.HANDSHAKE_INIT: HandshakeInit,
    PacketType.HANDSHAKE_RESPONSE: HandshakeResponse,
    PacketType.TRANSPORT: Transport,
    PacketType.FRAGMENT: Fragment,
    PacketType.RELAY: RelayEnvelope,
    PacketType.IDENTITY_REQUEST: IdentityRequest,
    PacketType.IDENTITY_RESPONSE: IdentityResponse,
    PacketType.COOKIE_REPLY: CookieReply,
}
