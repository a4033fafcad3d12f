"""Inner messages: the plaintext of one transport packet, after decryption.

The first byte names the kind. Frames carry the network id because two
nodes may share several networks over one session. Control messages travel
between members (subscriptions, path probes), between a member and its
controller (netconf, endpoint hints), or between a node and a root
(registration, look-ups, endpoint hints for hole punching).
"""

from __future__ import annotations

import enum
import struct

import construct as c

from l2mesh.wire.common import EndpointField, NetworkIdField, NodeIdField


class MessageKind(enum.IntEnum):
    # 2 and 10 stay unused: they named a multicast-frame and an error message
    # that were defined but never sent; reusing them gains nothing.
    FRAME = 1
    NETCONF_REQUEST = 3
    NETCONF_RESPONSE = 4
    MULTICAST_SUBSCRIPTIONS = 5
    ENDPOINT_HINTS = 6
    PATH_PROBE = 7
    PATH_PROBE_REPLY = 8
    KEEPALIVE = 9
    FRAME_OFFLOAD = 11
    ROOT_REGISTER = 12
    ROOT_REGISTERED = 13
    ROOT_LOOKUP = 14
    ROOT_LOOKUP_REPLY = 15
    NETCONF_DELTA = 16
    # Multicast subscriptions through the controller (LIKE / GATHER, as ZeroTier's);
    # numbered from 20, leaving room after the netconf kinds.
    MULTICAST_LIKE = 20
    MULTICAST_GATHER = 21
    MULTICAST_GATHER_REPLY = 22
    MULTICAST_SUBSCRIBERS_CHANGED = 23


class NetconfStatus(enum.IntEnum):
    OK = 0
    ACCESS_DENIED = 1
    NOT_FOUND = 2


def _kind(kind: MessageKind) -> c.Const:
    return "kind" / c.Const(kind, c.Int8ub)


Frame = "Frame" / c.Struct(
    _kind(MessageKind.FRAME),
    "network_id" / NetworkIdField,
    # A whole Ethernet frame: destination MAC, source MAC, ethertype, payload.
    "frame" / c.GreedyBytes,
    c.Check(lambda ctx: len(ctx.frame) >= 14),
)
"""One Ethernet frame from one member's TAP to another's: unicast, or a copy of a flood."""

FRAME_HEADER = struct.Struct(">BQ")
"""Hot-path equivalent of Frame's header (tests prove the bytes identical)."""
FRAME_HEADER_BYTES = 9

VNET_HEADER_BYTES = 10

FrameOffload = "FrameOffload" / c.Struct(
    _kind(MessageKind.FRAME_OFFLOAD),
    "network_id" / NetworkIdField,
    # Linux's struct virtio_net_hdr as the sending TAP gave it: checksum to
    # complete and/or TCP segmentation still to do. The receiving kernel
    # does that work when the frame is written to its TAP, so a 64 KiB TCP
    # super-frame crosses the overlay sealed once instead of 23 times.
    "vnet_flags" / c.Int8ul,
    "gso_type" / c.Int8ul,
    "header_bytes" / c.Int16ul,
    "gso_size" / c.Int16ul,
    "checksum_start" / c.Int16ul,
    "checksum_offset" / c.Int16ul,
    "frame" / c.GreedyBytes,
    c.Check(lambda ctx: len(ctx.frame) >= 14),
)
"""A frame (or TCP super-frame) with offload work left for the receiving kernel."""
# The hot path builds FrameOffload's first two fields with FRAME_HEADER (same
# layout, other kind byte); the virtio header follows as the TAP wrote it.

NetconfRequest = "NetconfRequest" / c.Struct(
    _kind(MessageKind.NETCONF_REQUEST),
    "network_id" / NetworkIdField,
    # The controller answers "no change" cheaply when this is current.
    "have_revision" / c.Int64ub,
    # The session proves the sender's X25519 key; the node id hashes both
    # public keys, so the node names its Ed25519 key here and proves it holds
    # it: a signature over NETCONF_PROOF_CONTEXT + its X25519 key + network id.
    # (Without it, anyone could claim a pre-authorized id's slot with random
    # bytes that hash to the id.)
    "ed25519" / c.Bytes(32),
    "proof" / c.Bytes(64),
    "client_version" / c.PascalString(c.Int8ub, "utf8"),
    c.Terminated,
)
"""Member -> controller: asks for (or refreshes) the network config of one network; doubles as a keepalive."""

NETCONF_PROOF_CONTEXT = b"l2mesh netconf request v1\0"
NETCONF_CHUNK_BYTES = 32 * 1024
MAX_NETCONF_CHUNKS = 512

NetconfResponse = "NetconfResponse" / c.Struct(
    _kind(MessageKind.NETCONF_RESPONSE),
    "network_id" / NetworkIdField,
    "status" / c.Enum(c.Int8ub, NetconfStatus),
    "revision" / c.Int64ub,
    # A signed config can be larger than one transport packet carries (big
    # networks): it travels in chunks the member puts back together.
    "chunk_index" / c.Int16ub,
    "chunk_count" / c.Int16ub,
    c.Check(lambda ctx: ctx.chunk_index < ctx.chunk_count <= MAX_NETCONF_CHUNKS),
    # Ed25519 signature (64 bytes) followed by the JSON document it signs;
    # empty unless status is OK.
    "signed_config" / c.Prefixed(c.Int32ub, c.GreedyBytes),
    c.Terminated,
)
"""Controller -> member: the signed config (one chunk of it), or why there is none (ACCESS_DENIED, NOT_FOUND)."""

MulticastGroup = c.Struct(
    "mac" / c.Bytes(6),
    "adi" / c.Int32ub,
)

MulticastSubscriptions = "MulticastSubscriptions" / c.Struct(
    _kind(MessageKind.MULTICAST_SUBSCRIPTIONS),
    "network_id" / NetworkIdField,
    # Subscriptions expire unless refreshed; the announcer says how long to keep them.
    "ttl_s" / c.Int16ub,
    # True when groups is the sender's complete set (others it had are dropped).
    "complete" / c.Flag,
    "groups" / c.PrefixedArray(c.Int16ub, MulticastGroup),
    c.Terminated,
)
"""Member -> member: the multicast groups its TAP listens to on one network."""

EndpointHints = "EndpointHints" / c.Struct(
    _kind(MessageKind.ENDPOINT_HINTS),
    # Member -> controller: the sender itself, with its local addresses.
    # Controller -> member: a peer, with the addresses it may be reached at.
    "node_id" / NodeIdField,
    # Set by the controller when both sides should probe each other now (hole punching).
    "punch" / c.Flag,
    "endpoints" / c.PrefixedArray(c.Int8ub, EndpointField),
    c.Terminated,
)
"""Candidate UDP endpoints of a node, for direct paths and hole punching."""

PathProbe = "PathProbe" / c.Struct(
    _kind(MessageKind.PATH_PROBE),
    "probe_id" / c.Int64ub,
    c.Terminated,
)
"""Asks the peer to answer on the path this arrived by: measures latency and proves the path works."""

PathProbeReply = "PathProbeReply" / c.Struct(
    _kind(MessageKind.PATH_PROBE_REPLY),
    "probe_id" / c.Int64ub,
    # The address the probe came from, as the replier saw it: behind NAT this
    # is the sender's public mapping (what STUN would tell it).
    "observed" / EndpointField,
    c.Terminated,
)
"""Answer to a PathProbe."""

Keepalive = "Keepalive" / c.Struct(
    _kind(MessageKind.KEEPALIVE),
    c.Terminated,
)
"""Keeps NAT mappings and the session alive when no frames flow."""

ROOT_REGISTER_CONTEXT = b"l2mesh root register v1\0"
MAX_REGISTERED_ENDPOINTS = 8
MAX_LOOKUP_ENDPOINTS = 16

RootRegister = "RootRegister" / c.Struct(
    _kind(MessageKind.ROOT_REGISTER),
    # As in NetconfRequest: the session proves the X25519 key, the signature
    # (over ROOT_REGISTER_CONTEXT + X25519 key + the root's node id) proves
    # the Ed25519 key, and the two hash to the node id the root files us under.
    "ed25519" / c.Bytes(32),
    "proof" / c.Bytes(64),
    # Addresses only the sender knows (its LAN addresses, a port mapping):
    # the root adds the address it sees the registration come from.
    "local_endpoints" / c.PrefixedArray(c.Int8ub, EndpointField),
    c.Check(lambda ctx: len(ctx.local_endpoints) <= MAX_REGISTERED_ENDPOINTS),
    c.Terminated,
)
"""Node -> root: file me under my node id at this address (sent again to stay registered)."""

RootRegistered = "RootRegistered" / c.Struct(
    _kind(MessageKind.ROOT_REGISTERED),
    # How long the registration lasts unless renewed.
    "ttl_s" / c.Int16ub,
    # The registration's address as the root saw it (the sender's NAT mapping).
    "observed" / EndpointField,
    c.Terminated,
)
"""Root -> node: the registration is filed."""

RootLookup = "RootLookup" / c.Struct(
    _kind(MessageKind.ROOT_LOOKUP),
    "node_id" / NodeIdField,
    c.Terminated,
)
"""Node -> root: where is this node, and what are its keys?"""

RootLookupReply = "RootLookupReply" / c.Struct(
    _kind(MessageKind.ROOT_LOOKUP_REPLY),
    "node_id" / NodeIdField,
    # Empty when the node is not registered here. Otherwise its keys as it
    # proved them (the asker checks they hash to node_id) and the addresses of
    # every live registration: several controller instances may share one id.
    "registered" / c.Flag,
    "x25519" / c.Bytes(32),
    "ed25519" / c.Bytes(32),
    "endpoints" / c.PrefixedArray(c.Int8ub, EndpointField),
    c.Check(lambda ctx: len(ctx.endpoints) <= MAX_LOOKUP_ENDPOINTS),
    c.Terminated,
)
"""Root -> node: what a node registered (only that), or that it is not registered."""

MAX_GATHER_PAGES = 4096

MulticastLike = "MulticastLike" / c.Struct(
    _kind(MessageKind.MULTICAST_LIKE),
    "network_id" / NetworkIdField,
    # The controller forgets the groups after this long unless they are liked again.
    "ttl_s" / c.Int16ub,
    # True on the first message of the sender's complete set (the groups it
    # had before are dropped); False on the messages that continue a set too
    # big for one packet.
    "complete" / c.Flag,
    "groups" / c.PrefixedArray(c.Int16ub, MulticastGroup),
    c.Terminated,
)
"""Member -> controller: the multicast groups its TAP listens to on one network (the controller serves them on GATHER)."""

MulticastGather = "MulticastGather" / c.Struct(
    _kind(MessageKind.MULTICAST_GATHER),
    "network_id" / NetworkIdField,
    "group" / MulticastGroup,
    # Echoed in every reply page, so pages of an older question are told apart.
    "gather_id" / c.Int32ub,
    # At most this many subscribers (0: all of them; l2mesh members ask for all).
    "limit" / c.Int32ub,
    c.Terminated,
)
"""Member -> controller: who subscribes to this group? (asked before sending to it, and again while in use)."""

MulticastGatherReply = "MulticastGatherReply" / c.Struct(
    _kind(MessageKind.MULTICAST_GATHER_REPLY),
    "network_id" / NetworkIdField,
    "group" / MulticastGroup,
    "gather_id" / c.Int32ub,
    # A big group's subscribers span several packets; the asker uses the
    # answer once it holds every page of it.
    "page_index" / c.Int16ub,
    "page_count" / c.Int16ub,
    c.Check(lambda ctx: ctx.page_index < ctx.page_count <= MAX_GATHER_PAGES),
    "subscribers" / c.PrefixedArray(c.Int16ub, NodeIdField),
    c.Terminated,
)
"""Controller -> member: one page of a group's subscribers."""

GATHER_REPLY_HEADER = struct.Struct(">BQ6sIIHHH")
"""Hot-path equivalent of MulticastGatherReply up to its subscribers (tests prove the bytes identical):
a 10,000-member group's 50 pages built by construct cost the controller ~25 ms per GATHER."""


def pack_gather_reply_page(
    network_id: int, group: bytes, gather_id: int, page_index: int, page_count: int, packed_ids: bytes
) -> bytes:
    """One MulticastGatherReply page from node ids already packed five bytes each."""
    header = GATHER_REPLY_HEADER.pack(
        MessageKind.MULTICAST_GATHER_REPLY, network_id, group[:6], int.from_bytes(group[6:10], "big"),
        gather_id, page_index, page_count, len(packed_ids) // 5,
    )
    return header + packed_ids

MulticastSubscribersChanged = "MulticastSubscribersChanged" / c.Struct(
    _kind(MessageKind.MULTICAST_SUBSCRIBERS_CHANGED),
    "network_id" / NetworkIdField,
    "group" / MulticastGroup,
    "added" / c.PrefixedArray(c.Int16ub, NodeIdField),
    "removed" / c.PrefixedArray(c.Int16ub, NodeIdField),
    c.Terminated,
)
"""Controller -> member: a group the member recently gathered gained or lost subscribers (pushed at once)."""
NetconfDelta = "NetconfDelta" / c.Struct(
    _kind(MessageKind.NETCONF_DELTA),
    "network_id" / NetworkIdField,
    # Applies to a member holding from_revision exactly (to_revision equal to it:
    # the same config with new times); repeated inside the signed document.
    "from_revision" / c.Int64ub,
    "to_revision" / c.Int64ub,
    # Ed25519 signature (64 bytes, over a delta-only context and the JSON) followed
    # by the JSON (l2mesh/netconf_delta.py). Never chunked: a change this large
    # goes out as full configs instead.
    "signed_delta" / c.Prefixed(c.Int32ub, c.GreedyBytes),
    c.Check(lambda ctx: len(ctx.signed_delta) <= NETCONF_CHUNK_BYTES),
    c.Terminated,
)
"""Controller -> member: what changed in a network's config since a revision, signed once for every member."""

MESSAGES: dict[MessageKind, c.Construct] = {
    MessageKind.FRAME: Frame,
    MessageKind.NETCONF_REQUEST: NetconfRequest,
    MessageKind.NETCONF_RESPONSE: NetconfResponse,
    MessageKind.MULTICAST_SUBSCRIPTIONS: MulticastSubscriptions,
    MessageKind.ENDPOINT_HINTS: EndpointHints,
    MessageKind.PATH_PROBE: PathProbe,
    MessageKind.PATH_PROBE_REPLY: PathProbeReply,
    MessageKind.KEEPALIVE: Keepalive,
    MessageKind.FRAME_OFFLOAD: FrameOffload,
    MessageKind.ROOT_REGISTER: RootRegister,
    MessageKind.ROOT_REGISTERED: RootRegistered,
    MessageKind.ROOT_LOOKUP: RootLookup,
    MessageKind.ROOT_LOOKUP_REPLY: RootLookupReply,
    MessageKind.MULTICAST_LIKE: MulticastLike,
    MessageKind.MULTICAST_GATHER: MulticastGather,
    MessageKind.MULTICAST_GATHER_REPLY: MulticastGatherReply,
    MessageKind.MULTICAST_SUBSCRIBERS_CHANGED: MulticastSubscribersChanged,
    MessageKind.NETCONF_DELTA: NetconfDelta,
}
