"""Valid instances of everything l2mesh reads from outside: the corpus the mutator starts from.

Every outer packet and inner message of l2mesh/wire, TCP-fallback stream
heads and frames, bridge hellos, NAT-PMP and PCP replies, Ethernet frames
of every kind the switch looks into, network configs and deltas, flow-rule
texts, admin API requests and state files. Builders take the names (ids,
MACs, addresses) of the world they are for, so a stateful target gets
messages its core will take for its own, not only ones refused at the door.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

import dpkt

from l2mesh.crypto.cookie import CookieGenerator
from l2mesh.fragments import fragment
from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import format_network_id, format_node_id, make_network_id, member_mac
from l2mesh.managed_routes import parse_route_spec
from l2mesh.netconf import MemberConfig, NetworkConfig, canonical_json
from l2mesh.netconf_delta import ConfigDelta, content_digest, members_sum
from l2mesh.rules.syntax import parse_rules
from l2mesh.wire import bridge, natpmp, pcp, stream
from l2mesh.wire.common import Endpoint
from l2mesh.wire.messages import (
    FRAME_HEADER,
    NETCONF_PROOF_CONTEXT,
    EndpointHints,
    Frame,
    Keepalive,
    MessageKind,
    MulticastGather,
    MulticastGatherReply,
    MulticastLike,
    MulticastSubscribersChanged,
    MulticastSubscriptions,
    NetconfDelta,
    NetconfRequest,
    NetconfResponse,
    PathProbe,
    PathProbeReply,
    RootLookup,
    RootLookupReply,
    RootRegister,
    RootRegistered,
)
from l2mesh.wire.packets import (
    HANDSHAKE_INIT_BYTES,
    HANDSHAKE_RESPONSE_BYTES,
    MAC_BYTES,
    RELAY_HEADER,
    TRANSPORT_HEADER,
    CookieReply,
    IdentityRequest,
    IdentityResponse,
    PacketType,
)

BROADCAST_MAC = b"\xff" * 6
MDNS_V4_MAC = bytes.fromhex("01005e0000fb")
MDNS_V6_MAC = bytes.fromhex("3333000000fb")
LAN_HOST_MAC = bytes.fromhex("525400123456")


@dataclass(frozen=True)
class Names:
    """Who is who in the world a corpus is for: the sender and receiver of frames and messages."""

    network_id: int
    sender_id: int
    receiver_id: int
    sender_ip: str = "10.147.17.2"
    receiver_ip: str = "10.147.17.1"
    sender_endpoint: Endpoint = ("198.18.2.2", 9993)

    @property
    def sender_mac(self) -> bytes:
        return member_mac(self.sender_id, self.network_id)

    @property
    def receiver_mac(self) -> bytes:
        return member_mac(self.receiver_id, self.network_id)


DEFAULT_NAMES = Names(make_network_id(0x0A1B2C3D4E, 1), 0x1000000002, 0x1000000001)


# -- Ethernet --------------------------------------------------------------------------------------------


def _ip4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def ethernet_frames(names: Names = DEFAULT_NAMES) -> list[bytes]:
    """One frame of every kind the switch and the flow rules look into, from sender to receiver (or a group)."""
    src, dst = names.sender_mac, names.receiver_mac
    src_ip, dst_ip = _ip4(names.sender_ip), _ip4(names.receiver_ip)
    eth = dpkt.ethernet.Ethernet

    def ipv4(payload: dpkt.Packet, protocol: int, to_ip: bytes = dst_ip, to_mac: bytes = dst) -> bytes:
        packet = dpkt.ip.IP(src=src_ip, dst=to_ip, p=protocol, ttl=64, data=payload)
        packet.len = len(bytes(packet))
        return bytes(eth(src=src, dst=to_mac, type=dpkt.ethernet.ETH_TYPE_IP, data=packet))

    def ipv6(payload: bytes, next_header: int, to_ip: bytes, to_mac: bytes) -> bytes:
        header = struct.pack(">IHBB16s16s", 6 << 28, len(payload), next_header, 255, b"\xfe\x80" + bytes(13) + b"\x02", to_ip)
        return dst_mac_frame(to_mac, 0x86DD, header + payload)

    def dst_mac_frame(to_mac: bytes, ethertype: int, payload: bytes) -> bytes:
        return to_mac + src + struct.pack(">H", ethertype) + payload

    arp_request = dpkt.arp.ARP(sha=src, spa=src_ip, tha=bytes(6), tpa=dst_ip, op=dpkt.arp.ARP_OP_REQUEST)
    arp_reply = dpkt.arp.ARP(sha=src, spa=src_ip, tha=dst, tpa=dst_ip, op=dpkt.arp.ARP_OP_REPLY)
    udp = dpkt.udp.UDP(sport=5353, dport=5353, data=b"\x00" * 12)
    udp.ulen = len(bytes(udp))
    tcp = dpkt.tcp.TCP(sport=40000, dport=22, flags=dpkt.tcp.TH_SYN, data=b"")
    icmp = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"ping" * 8))
    dhcp = dpkt.udp.UDP(sport=68, dport=67, data=bytes(240))
    dhcp.ulen = len(bytes(dhcp))
    igmp_report = bytes([0x16, 0, 0, 0]) + bytes([224, 0, 0, 251])
    mld_report = bytes([143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 1]) + bytes.fromhex("ff0200000000000000000000000000fb")
    solicited = bytes.fromhex("ff0200000000000000000001ff") + dst[3:]
    neighbor_solicit = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + b"\xfe\x80" + bytes(13) + b"\x01" + bytes([1, 1]) + src
    hello = bridge.BridgeHello.build({"source": src, "network_id": names.network_id, "node_id": names.sender_id})
    topology_change = bridge.TopologyChange.build(
        {"source": src, "network_id": names.network_id, "node_id": names.sender_id, "bridges": [names.receiver_id]}
    )
    ipv4_unicast = ipv4(udp, dpkt.ip.IP_PROTO_UDP)
    return [
        bytes(eth(src=src, dst=BROADCAST_MAC, type=dpkt.ethernet.ETH_TYPE_ARP, data=arp_request)),
        bytes(eth(src=src, dst=dst, type=dpkt.ethernet.ETH_TYPE_ARP, data=arp_reply)),
        ipv4_unicast,
        ipv4(tcp, dpkt.ip.IP_PROTO_TCP),
        ipv4(icmp, dpkt.ip.IP_PROTO_ICMP),
        ipv4(dhcp, dpkt.ip.IP_PROTO_UDP, b"\xff" * 4, BROADCAST_MAC),
        ipv4(udp, dpkt.ip.IP_PROTO_UDP, bytes([224, 0, 0, 251]), MDNS_V4_MAC),
        dst_mac_frame(bytes.fromhex("01005e000016"), 0x0800, _ipv4_raw(src_ip, bytes([224, 0, 0, 22]), 2, igmp_report)),
        ipv6(mld_report, 58, bytes.fromhex("ff020000000000000000000000000016"), bytes.fromhex("333300000016")),
        ipv6(neighbor_solicit, 58, solicited, b"\x33\x33" + solicited[-4:]),
        ipv6(bytes(udp), 17, bytes.fromhex("ff0200000000000000000000000000fb"), MDNS_V6_MAC),
        # 802.1Q and QinQ: the rules look behind VLAN tags.
        dst + src + b"\x81\x00\x00\x05" + ipv4_unicast[12:],
        dst + src + b"\x88\xa8\x00\x07\x81\x00\x00\x05" + ipv4_unicast[12:],
        hello,
        topology_change,
        dst + src + b"\x88\xb5" + b"hello over the overlay",
        dst + src + b"\x08\x00",  # header only
        # From a host on a bridge member's LAN: learned behind the bridge, refused from anyone else.
        dst + LAN_HOST_MAC + ipv4_unicast[12:],
        BROADCAST_MAC + LAN_HOST_MAC + b"\x08\x06" + bytes(arp_request)[:8] + LAN_HOST_MAC + bytes(arp_request)[14:],
    ]


def _ipv4_raw(src_ip: bytes, dst_ip: bytes, protocol: int, payload: bytes) -> bytes:
    packet = dpkt.ip.IP(src=src_ip, dst=dst_ip, p=protocol, ttl=1, data=payload)
    packet.len = len(bytes(packet))
    return bytes(packet)


# -- inner messages -----------------------------------------------------------------------------------------


def inner_messages(names: Names = DEFAULT_NAMES, frames: list[bytes] | None = None) -> list[bytes]:
    """Every inner message kind, frames first (one per Ethernet frame), addressed as names say."""
    network_id = names.network_id
    group = {"mac": MDNS_V4_MAC, "adi": 0}
    endpoints = [("198.18.3.2", 9993), ("2001:db8::1", 9993)]
    identity = Identity.generate()
    out = [FRAME_HEADER.pack(MessageKind.FRAME, network_id) + frame for frame in frames or ethernet_frames(names)]
    offload = struct.pack(">BQ", MessageKind.FRAME_OFFLOAD, network_id) + struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16)
    out.append(offload + ethernet_frames(names)[3])
    out += [
        Frame.build({"network_id": network_id, "frame": bytes(14)}),
        NetconfRequest.build({"network_id": network_id, "have_revision": 3, "ed25519": identity.ed25519_public,
                              "proof": bytes(64), "client_version": "0.1"}),
        NetconfResponse.build({"network_id": network_id, "status": "OK", "revision": 4, "chunk_index": 0,
                               "chunk_count": 1, "signed_config": bytes(64) + b"{}"}),
        NetconfResponse.build({"network_id": network_id, "status": "ACCESS_DENIED", "revision": 0, "chunk_index": 0,
                               "chunk_count": 1, "signed_config": b""}),
        NetconfResponse.build({"network_id": network_id, "status": "OK", "revision": 4, "chunk_index": 1,
                               "chunk_count": 3, "signed_config": bytes(100)}),
        MulticastSubscriptions.build({"network_id": network_id, "ttl_s": 180, "complete": True, "groups": [group, group]}),
        EndpointHints.build({"node_id": names.sender_id, "punch": True, "endpoints": endpoints}),
        PathProbe.build({"probe_id": 7}),
        PathProbeReply.build({"probe_id": 7, "observed": endpoints[0]}),
        Keepalive.build({}),
        RootRegister.build({"ed25519": identity.ed25519_public, "proof": bytes(64), "local_endpoints": endpoints}),
        RootRegistered.build({"ttl_s": 60, "observed": endpoints[1]}),
        RootLookup.build({"node_id": names.receiver_id}),
        RootLookupReply.build({"node_id": identity.node_id, "registered": True, "x25519": identity.x25519_public,
                               "ed25519": identity.ed25519_public, "endpoints": endpoints}),
        MulticastLike.build({"network_id": network_id, "ttl_s": 180, "complete": True, "groups": [group]}),
        MulticastGather.build({"network_id": network_id, "group": group, "gather_id": 1, "limit": 0}),
        MulticastGatherReply.build({"network_id": network_id, "group": group, "gather_id": 1, "page_index": 0,
                                    "page_count": 1, "subscribers": [names.sender_id, names.receiver_id]}),
        MulticastSubscribersChanged.build({"network_id": network_id, "group": group, "added": [names.sender_id],
                                           "removed": [names.receiver_id]}),
        NetconfDelta.build({"network_id": network_id, "from_revision": 4, "to_revision": 5,
                            "signed_delta": bytes(64) + b"{}"}),
    ]
    return out


def member_to_controller_messages(member: Identity, network_id: int, other_id: int) -> list[bytes]:
    """What a member sends its controller, with a real proof of its keys: ask, like, gather, hint, probe."""
    group = {"mac": MDNS_V4_MAC, "adi": 0}
    proof = member.sign(NETCONF_PROOF_CONTEXT + member.x25519_public + network_id.to_bytes(8, "big"))
    names = Names(network_id, member.node_id, other_id)
    return [
        NetconfRequest.build({"network_id": network_id, "have_revision": 0, "ed25519": member.ed25519_public,
                              "proof": proof, "client_version": "fuzz"}),
        MulticastLike.build({"network_id": network_id, "ttl_s": 180, "complete": True, "groups": [group]}),
        MulticastGather.build({"network_id": network_id, "group": group, "gather_id": 1, "limit": 0}),
        EndpointHints.build({"node_id": member.node_id, "punch": False, "endpoints": [("192.168.1.2", 9993)]}),
        EndpointHints.build({"node_id": other_id, "punch": True, "endpoints": []}),
        PathProbe.build({"probe_id": 1}),
        *inner_messages(names)[-12:],
    ]


# -- outer packets -----------------------------------------------------------------------------------------


def handshake_bodies() -> tuple[bytes, bytes]:
    """An initiation and a response up to their macs, with random Noise content."""
    init = bytes([PacketType.HANDSHAKE_INIT, 0, 0, 0]) + os.urandom(HANDSHAKE_INIT_BYTES - 4 - 2 * MAC_BYTES)
    response = bytes([PacketType.HANDSHAKE_RESPONSE, 0, 0, 0]) + os.urandom(HANDSHAKE_RESPONSE_BYTES - 4 - 2 * MAC_BYTES)
    return init, response


def with_macs(body_or_packet: bytes, receiver_static: bytes) -> bytes:
    """A handshake packet with a correct mac1 for receiver_static (body: the packet without its 32 mac bytes)."""
    return CookieGenerator(receiver_static).add_macs(body_or_packet, 0.0)


def outer_packets(names: Names = DEFAULT_NAMES, receiver_static: bytes | None = None) -> list[bytes]:
    """Every outer packet type; handshakes carry a correct mac1 when the receiver's static key is given."""
    init, response = handshake_bodies()
    key = receiver_static or os.urandom(32)
    sealed = TRANSPORT_HEADER.pack(PacketType.TRANSPORT, 0x01020304, 5) + os.urandom(600)
    identity = Identity.generate()
    packets = [
        with_macs(init, key),
        with_macs(response, key),
        CookieReply.build({"receiver_index": 0x01020304, "nonce": os.urandom(24), "encrypted_cookie": os.urandom(32)}),
        sealed,
        *fragment(sealed, 256),
        IdentityRequest.build({"node_id": names.receiver_id}),
        IdentityRequest.build({"node_id": 0}),
        IdentityResponse.build({"x25519": identity.x25519_public, "ed25519": identity.ed25519_public}),
    ]
    relay = RELAY_HEADER.pack(PacketType.RELAY, 0, names.receiver_id.to_bytes(5, "big"), names.sender_id.to_bytes(5, "big"))
    return packets + [relay + packet for packet in packets[:5]]


def stream_inputs() -> list[bytes]:
    """Upgrade heads (request and response) and framed datagrams, as a TCP relay connection carries them."""
    return [
        stream.upgrade_request("198.18.0.1", 9993),
        stream.upgrade_request("2001:db8::1", 443),
        stream.upgrade_response(),
        stream.refusal(426),
        stream.encode_frame(b"\x03" + bytes(31)) + stream.encode_frame(b"\x05" * 100),
        stream.encode_segments(bytes(3000), 1000),
    ]


def portmap_replies(nonce: bytes, internal_port: int = 9993) -> list[bytes]:
    """NAT-PMP and PCP answers a home router sends (successes and errors)."""
    return [
        natpmp.ExternalAddressResponse.build({"result": 0, "epoch_s": 1000, "external_ip": "198.18.9.9"}),
        natpmp.MappingResponse.build({"opcode": 128 + natpmp.Opcode.MAP_UDP, "result": 0, "epoch_s": 1000,
                                      "internal_port": internal_port, "external_port": 40000, "lifetime_s": 7200}),
        natpmp.ErrorResponse.build({"opcode": 128, "result": natpmp.ResultCode.UNSUPPORTED_VERSION, "epoch_s": 7}),
        pcp.MapResponse.build({"result": 0, "lifetime_s": 7200, "epoch_s": 1000, "reserved2": bytes(12), "nonce": nonce,
                               "protocol": 17, "reserved3": bytes(3), "internal_port": internal_port, "external_port": 40000,
                               "external_ip": "198.18.9.9", "options": b""}),
        pcp.AnnounceResponse.build({"result": 0, "lifetime_s": 0, "epoch_s": 1000, "reserved2": bytes(12), "options": b""}),
    ]


# -- documents ---------------------------------------------------------------------------------------------


def network_config(network_id: int, issued_to: int, members: list[tuple[PublicIdentity, str, Endpoint]],
                   revision: int = 10, rules: str = "") -> NetworkConfig:
    return NetworkConfig(
        network_id=network_id, revision=revision, issued_to=issued_to, name="fuzz", timestamp_s=1.0, expires_s=0.0,
        multicast_limit=32, members=tuple(
            MemberConfig(identity.node_id, identity, ips=(ip, "fd00::%x/64" % (n + 1)), endpoints=(endpoint,), name=f"m{n}",
                         tags=frozenset({"plc"}) if n else frozenset())
            for n, (identity, ip, endpoint) in enumerate(members)
        ),
        rules=parse_rules(rules or RULE_TEXTS[0]),
        routes=(parse_route_spec("10.10.0.0/16@10.147.17.2"), parse_route_spec("0.0.0.0/0@10.147.17.2"),
                parse_route_spec("198.18.0.0/15"), parse_route_spec("10.147.17.0/24")),
        dns_domain="lab.example",
        controllers=(("198.18.0.1", 9994),),
    )


def config_documents(config: NetworkConfig) -> list[bytes]:
    """The config's canonical JSON (what a controller signs), and a few relatives."""
    return [config.canonical_bytes(), config.with_changes(members=config.members[:1]).canonical_bytes()]


def delta_documents(config: NetworkConfig) -> list[bytes]:
    """Deltas from config's revision: a member changed, one removed, the network's settings changed."""
    changed = config.members[-1]
    changed = MemberConfig(changed.node_id, changed.identity, ips=("10.147.17.99/24",), endpoints=changed.endpoints, name="moved")
    members = [*config.members[:-1], changed]
    result = config.with_changes(revision=config.revision + 1, members=tuple(members))
    digest = content_digest(result, members_sum(members, config.network_id))
    delta = ConfigDelta(config.network_id, config.revision, config.revision + 1, 2.0, 0.0, digest, members=(changed,))
    removed_config = config.with_changes(revision=config.revision + 1, members=config.members[:1])
    removed = ConfigDelta(config.network_id, config.revision, config.revision + 1, 2.0, 0.0,
                          content_digest(removed_config, members_sum(removed_config.members, config.network_id)),
                          removed=tuple(m.node_id for m in config.members[1:]))
    return [canonical_json(delta.to_json()), canonical_json(removed.to_json())]


RULE_TEXTS = [
    "# guests may not reach ssh\ndrop tcp dport 22 src-tag guest\ndrop dst 10.147.17.0/28 src-tag guest\n"
    "drop ethertype 0x88b5 not src-tag plc\naccept\n",
    "log udp sport 1024-65535 dst fd00::/64\ndrop broadcast\ndrop src-mac 52:54:00:00:00:01 multicast\naccept\n",
    "drop icmpv6 not dst-tag server\naccept protocol icmp\ndrop\n",
]


def admin_requests(network_id: int, node_id: int) -> list[bytes]:
    """Admin API requests as 'METHOD PATH' on the first line and the JSON body after it."""
    net, node = format_network_id(network_id), format_node_id(node_id)
    base = "/api/v1"

    def request(method: str, path: str, body: object | None = None) -> bytes:
        return f"{method} {base}{path}\n".encode() + (b"" if body is None else json.dumps(body).encode())

    return [
        request("POST", "/networks", {"name": "lab", "pools": ["10.147.18.0/24"], "private": True, "mtu": 2800,
                                      "multicast_limit": 32, "broadcast": True}),
        request("PATCH", f"/networks/{net}", {"name": "renamed", "routes": ["10.10.0.0/16@10.147.17.1"], "dns_domain": "lab.test",
                                              "pools": ["10.147.17.0/24", "fd00::/64"]}),
        request("PATCH", f"/networks/{net}", {"remove_routes": ["10.10.0.0/16"], "add_routes": ["10.20.0.0/16@10.147.17.2"],
                                              "mtu": 1400, "multicast_limit": None}),
        request("PUT", f"/networks/{net}/rules", {"rules": RULE_TEXTS[0]}),
        request("PATCH", f"/networks/{net}/members/{node}", {"authorized": True, "ips": ["10.147.17.7"], "bridge": False,
                                                            "name": "box", "tags": ["plc", "guest"]}),
        request("PATCH", f"/networks/{net}/members/{format_node_id(node_id + 1)}", {"authorized": False}),
        request("GET", f"/networks/{net}/members/{node}"),
        request("GET", f"/networks/{net}"),
        request("DELETE", f"/networks/{net}/members/{node}"),
        request("GET", "/status"),
    ]


def state_files(identity: Identity, network_id: int, controller: PublicIdentity) -> dict[str, list[bytes]]:
    """What a node's and a controller's state directories hold, by file kind."""
    def dumps(doc: object) -> bytes:
        return json.dumps(doc, indent=2).encode()

    return {
        "identity": [dumps(identity.to_private_json())],
        "networks": [dumps({"networks": {
            format_network_id(network_id): {"controller": "198.18.0.1:9994", "options": {"allow_default": True}},
            format_network_id(network_id + 1): {"controller": None, "options": {}},
        }})],
        "roots": [dumps({"pinned": {"198.18.0.7:9993": controller.to_json(), "[2001:db8::7]:9993": controller.to_json()}})],
        "controller": [dumps(controller.to_json())],
    }
