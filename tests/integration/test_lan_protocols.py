"""Issue 5 acceptance: LAN protocols over the overlay, driven by real programs in namespaces.

Each test builds its own topology (two members in their own namespaces
behind the router namespace) and starts the daemons from static network
configs, so no controller is needed. The programs on the overlay are real:
iputils arping and ping, dnsmasq (DHCP server), python-zeroconf (mDNS /
DNS-SD, an implementation nobody here wrote), tcpdump, plus small Python
programs for what no installed tool does (a DHCP client, a multicast
receiver, a raw frame flood). Every process is started through the topology
helpers, so teardown stops it by PID, and every wait is bounded.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import time
from typing import Any

from tests.integration.topology import Host, Topology, networks_of, wait_until

PYTHON = sys.executable


# -- helpers ------------------------------------------------------------------------------------------------


def start_members(
    topology: Topology,
    network_number: int,
    names: tuple[str, ...] = ("a", "b"),
    broadcast: bool = True,
    ips: dict[str, list[str]] | None = None,
) -> tuple[str, list[Host]]:
    """Members on one network from static configs; returns once every TAP is up with its managed addresses."""
    hosts = [topology.add_host(name) for name in names]
    network_id, files = topology.write_static_netconfs(hosts, network_number=network_number, broadcast=broadcast, ips=ips)
    for host in hosts:
        host.start_daemon("--static-netconf", str(files[host.name]))
    for index, host in enumerate(hosts, start=1):
        wanted = (ips or {}).get(host.name, [f"10.147.{network_number}.{index}/24"])
        wait_until(lambda h=host, w=wanted: tap_has(h, network_id, w), 15, what=f"{host.name} TAP with {wanted}")
    return network_id, hosts


def tap_has(host: Host, network_id: str, cidrs: list[str]) -> bool:
    result = host.run("ip", "-o", "-4", "addr", "show", "dev", host.tap_name(network_id), check=False)
    return result.returncode == 0 and all(f" {cidr} " in result.stdout for cidr in cidrs)


def overlay_ip(network_number: int, index: int) -> str:
    return f"10.147.{network_number}.{index}"


def mac_of(host: Host, network_id: str) -> str:
    return next(n["mac"] for n in networks_of(host) if n["id"] == network_id).lower()


def switch_counters(host: Host, network_id: str) -> dict[str, dict[str, int]]:
    return host.status()["counters"]["networks"][network_id]


def counter(host: Host, network_id: str, group: str, name: str) -> int:
    return int(switch_counters(host, network_id)[group].get(name, 0))


def python(host: Host, script: str, *args: str, timeout_s: float = 30.0) -> Any:
    """Run a Python program in host's namespace and parse the JSON document it prints last."""
    result = host.run(PYTHON, "-c", script, *args, timeout_s=timeout_s, check=False)
    assert result.returncode == 0, f"{host.name} script failed ({result.returncode}): {result.stdout[-1000:]} {result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_log(topology: Topology, log_name: str, text: str, timeout_s: float = 15.0) -> None:
    wait_until(lambda: text in topology.log_of(log_name), timeout_s, what=f"{text!r} in {log_name} log")


def link_local(host: Host, ifname: str) -> str | None:
    """The interface's IPv6 link-local address once duplicate address detection finished, else None."""
    out = host.run("ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link", check=False).stdout
    for line in out.splitlines():
        match = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", line)
        if match and "tentative" not in line:
            return match.group(1)
    return None


# -- ARP ------------------------------------------------------------------------------------------------------


def test_arping_resolves_the_right_mac_answered_locally_without_crossing(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=41)
    tap_a, tap_b = a.tap_name(network_id), b.tap_name(network_id)
    mac_a, mac_b = mac_of(a, network_id), mac_of(b, network_id)
    # Watch B's TAP for any broadcast ARP request from A: the emulation should keep them all on A.
    dump = b.popen("tcpdump", "-n", "-l", "-e", "-i", tap_b, f"arp and ether broadcast and ether src {mac_a}",
                   log_name="b-tcpdump")
    wait_log(topology, "b-tcpdump", "listening on")
    before = counter(a, network_id, "forwarded", "arp_answered_locally")
    result = wait_until(
        lambda: (r := a.run("arping", "-c", "2", "-w", "4", "-I", tap_a, overlay_ip(41, 2), check=False)).returncode == 0 and r,
        20, what="arping reply",
    )
    replies = re.findall(r"reply from 10\.147\.41\.2 \[([0-9A-Fa-f:]+)\]", result.stdout)
    assert replies and all(mac.lower() == mac_b for mac in replies), result.stdout
    after = counter(a, network_id, "forwarded", "arp_answered_locally")
    assert after > before, switch_counters(a, network_id)
    time.sleep(0.5)
    topology.stop_process(dump)
    seen = topology.log_of("b-tcpdump")
    assert "Request" not in seen, f"a broadcast ARP request crossed to B:\n{seen}"
    # The other direction, through the kernel's own resolution: ping, then B's neighbour table holds A's MAC.
    assert wait_until(lambda: b.ping(overlay_ip(41, 1), timeout_s=1), 10, what="b -> a")
    neighbours = b.run("ip", "neigh", "show", "dev", tap_b).stdout.lower()
    assert f"{overlay_ip(41, 1)} lladdr {mac_a}" in neighbours, neighbours
    print(f"\narping: {len(replies)} replies naming {mac_b}; arp_answered_locally on A {before} -> {after}")


# -- IPv6 ------------------------------------------------------------------------------------------------------


def test_ipv6_link_local_ping_between_members_with_no_ipv6_configuration(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=42)
    tap_a, tap_b = a.tap_name(network_id), b.tap_name(network_id)
    target = wait_until(lambda: link_local(b, tap_b), 15, interval_s=0.2, what="B's link-local address past DAD")
    wait_until(lambda: link_local(a, tap_a), 15, interval_s=0.2, what="A's link-local address past DAD")
    # Neighbour solicitation goes to B's solicited-node group, which B announces after the kernel joins it.
    wait_until(
        lambda: a.run("ping", "-6", "-n", "-c", "1", "-W", "1", f"{target}%{tap_a}", check=False, timeout_s=10).returncode == 0,
        15, what="first IPv6 link-local echo reply",
    )
    result = a.run("ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", f"{target}%{tap_a}", timeout_s=20)
    assert " 0% packet loss" in result.stdout, result.stdout
    assert re.search(r"3 packets transmitted, 3 received", result.stdout), result.stdout


# -- DHCP --------------------------------------------------------------------------------------------------------

DHCP_CLIENT = r"""
import json, random, socket, sys, time
import dpkt

ifname, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
xid = random.getrandbits(32)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
sock.bind((ifname, 0))
sock.settimeout(0.2)


def frame(message_type, options):
    # RFC 2131 client without an address: from 0.0.0.0:68 to 255.255.255.255:67, broadcast flag set
    # so the server broadcasts its answers (the kernel has no address to accept unicast on yet).
    opts = [(dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([message_type]))] + options
    opts.append((dpkt.dhcp.DHCP_OPT_PARAM_REQ, bytes([1, 3, 51])))
    dhcp = dpkt.dhcp.DHCP(op=dpkt.dhcp.DHCP_OP_REQUEST, xid=xid, flags=0x8000, chaddr=mac + b"\0" * 10, opts=opts)
    udp = dpkt.udp.UDP(sport=68, dport=67, data=bytes(dhcp))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=b"\0\0\0\0", dst=b"\xff\xff\xff\xff", p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=mac, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def exchange(message_type, options, wanted, timeout_s=20.0):
    packet = frame(message_type, options)
    deadline = time.monotonic() + timeout_s
    resend_at = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= resend_at:
            sock.send(packet)
            resend_at = time.monotonic() + 2.0
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        eth = dpkt.ethernet.Ethernet(data)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP) or ip.data.dport != 68:
            continue
        try:
            reply = dpkt.dhcp.DHCP(ip.data.data)
        except (dpkt.UnpackError, dpkt.NeedData):
            continue
        opts = dict(reply.opts)
        if reply.xid == xid and opts.get(dpkt.dhcp.DHCP_OPT_MSGTYPE) == bytes([wanted]):
            return reply, opts, eth
    print(json.dumps({"error": f"no DHCP message type {wanted} within {timeout_s} s"}))
    sys.exit(1)


started = time.monotonic()
offer, offer_opts, offer_eth = exchange(dpkt.dhcp.DHCPDISCOVER, [], dpkt.dhcp.DHCPOFFER)
offered = socket.inet_ntoa(offer.yiaddr.to_bytes(4, "big"))
server = offer_opts[dpkt.dhcp.DHCP_OPT_SERVER_ID]
ack, ack_opts, _ = exchange(
    dpkt.dhcp.DHCPREQUEST,
    [(dpkt.dhcp.DHCP_OPT_REQ_IP, offer.yiaddr.to_bytes(4, "big")), (dpkt.dhcp.DHCP_OPT_SERVER_ID, server)],
    dpkt.dhcp.DHCPACK,
)
print(json.dumps({
    "offered": offered,
    "acked": socket.inet_ntoa(ack.yiaddr.to_bytes(4, "big")),
    "server": socket.inet_ntoa(server),
    "netmask": socket.inet_ntoa(ack_opts.get(dpkt.dhcp.DHCP_OPT_NETMASK, b"\0\0\0\0")),
    "lease_s": int.from_bytes(ack_opts.get(dpkt.dhcp.DHCP_OPT_LEASE_SEC, b"\0\0\0\0"), "big"),
    "offer_from_mac": offer_eth.src.hex(":"),
    "seconds": round(time.monotonic() - started, 2),
}))
"""


def test_dnsmasq_on_one_member_leases_an_address_to_another_without_a_managed_ip(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=60, ips={"a": ["10.147.60.1/24"], "b": []})
    tap_a, tap_b = a.tap_name(network_id), b.tap_name(network_id)
    mac_a, mac_b = mac_of(a, network_id), mac_of(b, network_id)
    assert b.run("ip", "-o", "-4", "addr", "show", "dev", tap_b).stdout.strip() == ""
    leases = topology.work_dir / "dnsmasq.leases"
    a.popen(
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--interface={tap_a}", "--bind-interfaces",
        "--port=0", "--dhcp-range=10.147.60.50,10.147.60.99,255.255.255.0", f"--dhcp-leasefile={leases}",
        f"--pid-file={topology.work_dir / 'dnsmasq.pid'}", "--log-dhcp", "--log-facility=-",
        log_name="a-dnsmasq",
    )
    wait_log(topology, "a-dnsmasq", "DHCP, IP range 10.147.60.50")
    lease = python(b, DHCP_CLIENT, tap_b, mac_b, timeout_s=60)
    print(f"\nDHCP: {lease}")
    address = ipaddress.ip_address(lease["acked"])
    assert lease["offered"] == lease["acked"]
    assert ipaddress.ip_address("10.147.60.50") <= address <= ipaddress.ip_address("10.147.60.99")
    assert lease["server"] == "10.147.60.1" and lease["netmask"] == "255.255.255.0"
    assert lease["offer_from_mac"] == mac_a
    wait_until(lambda: leases.exists() and mac_b in leases.read_text().lower(), 5, what="lease file entry")
    entry = next(line for line in leases.read_text().lower().splitlines() if mac_b in line)
    assert f" {address} " in f" {entry} ", entry
    # The lease works: B takes the address and both ends reach each other over the overlay.
    b.run("ip", "addr", "add", f"{address}/24", "dev", tap_b)
    assert wait_until(lambda: b.ping("10.147.60.1", timeout_s=1), 10, what="b -> dhcp server")
    assert wait_until(lambda: a.ping(str(address), timeout_s=1), 10, what="dhcp server -> b's leased address")


# -- mDNS / DNS-SD -------------------------------------------------------------------------------------------

ZEROCONF_REGISTER = r"""
import socket, sys, time
from zeroconf import IPVersion, ServiceInfo, Zeroconf

ip, lifetime_s = sys.argv[1], float(sys.argv[2])
zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
info = ServiceInfo(
    "_l2mt._tcp.local.", "member-a._l2mt._tcp.local.", addresses=[socket.inet_aton(ip)], port=4242,
    properties={"who": "a"}, server="member-a.local.",
)
zc.register_service(info)
print("registered", flush=True)
try:
    time.sleep(lifetime_s)
finally:
    zc.unregister_service(info)
    zc.close()
"""

ZEROCONF_BROWSE = r"""
import json, sys, threading, time
from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

ip = sys.argv[1]
zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
found, event = [], threading.Event()


class Listener(ServiceListener):
    def add_service(self, zc, type_, name):
        found.append(name)
        event.set()

    def update_service(self, zc, type_, name):
        pass

    def remove_service(self, zc, type_, name):
        pass


started = time.monotonic()
browser = ServiceBrowser(zc, "_l2mt._tcp.local.", Listener())
result = {"found": [], "addresses": [], "port": None, "properties": {}}
if event.wait(20):
    result["browse_s"] = round(time.monotonic() - started, 3)
    result["found"] = list(found)
    info = zc.get_service_info("_l2mt._tcp.local.", found[0], timeout=5000)
    if info is not None:
        result["addresses"] = info.parsed_addresses()
        result["port"] = info.port
        result["properties"] = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
browser.cancel()
zc.close()
print(json.dumps(result))
"""


def test_python_zeroconf_service_registered_on_one_member_is_browsed_and_resolved_from_another(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=43)
    ip_a, ip_b = overlay_ip(43, 1), overlay_ip(43, 2)
    assert wait_until(lambda: a.ping(ip_b, timeout_s=1), 10, what="a -> b")
    a.popen(PYTHON, "-c", ZEROCONF_REGISTER, ip_a, "60", log_name="a-zeroconf")
    wait_log(topology, "a-zeroconf", "registered", timeout_s=20)
    before = counter(b, network_id, "forwarded", "multicast")
    result = python(b, ZEROCONF_BROWSE, ip_b, timeout_s=45)
    print(f"\nzeroconf: {result}")
    assert result["found"] == ["member-a._l2mt._tcp.local."], result
    assert result["addresses"] == [ip_a], result
    assert result["port"] == 4242 and result["properties"] == {"who": "a"}
    # B's queries went out as multicast to the mDNS subscribers (A), not as broadcast.
    assert counter(b, network_id, "forwarded", "multicast") > before
    assert counter(b, network_id, "forwarded", "flood") == 0


# -- subscriptions follow the kernel ----------------------------------------------------------------------------

MULTICAST_SENDER = r"""
import socket, sys, time
group, ip, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
deadline, seq = time.monotonic() + seconds, 0
print("sending", flush=True)
while time.monotonic() < deadline:
    s.sendto(str(seq).encode(), (group, 5007))
    seq += 1
    time.sleep(0.01)
"""

MULTICAST_RECEIVER = r"""
import json, socket, sys, time
group, ip = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, 5007))
s.settimeout(0.05)
joined = time.monotonic()
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(ip))
first = None
while time.monotonic() - joined < 10:
    try:
        s.recv(64)
    except socket.timeout:
        continue
    first = time.monotonic()
    break
received = 1 if first else 0
until = time.monotonic() + 0.5
while first and time.monotonic() < until:
    try:
        s.recv(64)
        received += 1
    except socket.timeout:
        pass
print(json.dumps({"latency_s": None if first is None else round(first - joined, 3), "received": received}))
"""


def test_a_new_multicast_subscription_takes_effect_within_a_second(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=47)
    ip_a, ip_b = overlay_ip(47, 1), overlay_ip(47, 2)
    assert wait_until(lambda: a.ping(ip_b, timeout_s=1), 10, what="a -> b")
    sender = a.popen(PYTHON, "-c", MULTICAST_SENDER, "239.1.2.3", ip_a, "30", log_name="a-mcast-sender")
    # Before B joins, A's switch drops the group's frames: nobody subscribed.
    start = counter(a, network_id, "drops", "multicast_no_subscribers")
    wait_until(lambda: counter(a, network_id, "drops", "multicast_no_subscribers") >= start + 20, 10,
               what="A dropping frames for a group nobody joined")
    result = python(b, MULTICAST_RECEIVER, "239.1.2.3", ip_b, timeout_s=20)
    latency = result["latency_s"]
    print(f"\nsubscription latency (B joins 239.1.2.3 -> first datagram from A): {latency} s")
    assert latency is not None, "B never received the group's datagrams"
    assert latency < 1.5
    assert result["received"] >= 10  # and the stream keeps flowing (one every 10 ms)
    # The receiver exited, the kernel left the group, B's next announcement drops it: A stops sending again.
    left = time.monotonic()
    dropped = counter(a, network_id, "drops", "multicast_no_subscribers")
    wait_until(lambda: counter(a, network_id, "drops", "multicast_no_subscribers") >= dropped + 10, 5, interval_s=0.05,
               what="A dropping the group's frames again after B left")
    print(f"unsubscription took effect within {time.monotonic() - left:.2f} s")
    topology.stop_process(sender)


# -- broadcast off ------------------------------------------------------------------------------------------------

UDP_LISTENER = r"""
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.settimeout(0.1)
print("listening", flush=True)
got = []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        data, source = s.recvfrom(256)
    except socket.timeout:
        continue
    got.append([data.decode(errors="replace"), source[0]])
print(json.dumps({"received": got}), flush=True)
"""

UDP_SENDER = r"""
import json, socket, sys, time
ifname, port, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
sent = 0
for i in range(10):
    for target in targets:
        s.sendto(f"{target} #{i}".encode(), (target, port))
        sent += 1
    time.sleep(0.05)
print(json.dumps({"sent": sent}))
"""


def test_broadcast_off_blocks_broadcast_while_unicast_arp_and_multicast_still_work(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=44, broadcast=False)
    tap_a = a.tap_name(network_id)
    ip_b = overlay_ip(44, 2)
    b.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0")
    # Unicast and ARP work.
    assert wait_until(lambda: a.ping(ip_b, timeout_s=1), 10, what="unicast a -> b")
    arping = a.run("arping", "-c", "2", "-w", "4", "-I", tap_a, ip_b, check=False)
    assert arping.returncode == 0 and mac_of(b, network_id) in arping.stdout.lower(), arping.stdout
    # Broadcast does not reach B.
    listener = b.popen(PYTHON, "-c", UDP_LISTENER, "5008", "4", log_name="b-udp-listener")
    wait_log(topology, "b-udp-listener", "listening")
    before = counter(a, network_id, "drops", "broadcast_disabled")
    sent = python(a, UDP_SENDER, tap_a, "5008", "255.255.255.255", "10.147.44.255")
    ping_b = a.run("ping", "-n", "-b", "-c", "3", "-i", "0.3", "-W", "1", "10.147.44.255", check=False, timeout_s=15)
    listener.wait(15)
    heard = json.loads(topology.log_of("b-udp-listener").strip().splitlines()[-1])
    assert sent["sent"] == 20
    assert heard["received"] == [], heard
    assert f"from {ip_b}" not in ping_b.stdout, ping_b.stdout
    blocked = counter(a, network_id, "drops", "broadcast_disabled") - before
    assert blocked >= 23, switch_counters(a, network_id)  # 20 UDP datagrams and 3 echo requests, at A's switch
    # Multicast is not broadcast: an echo to all-hosts (224.0.0.1, which B's kernel joined) is answered by B.
    all_hosts = a.run("ping", "-n", "-c", "3", "-i", "0.3", "-W", "1", "-I", tap_a, "224.0.0.1", check=False, timeout_s=15)
    assert f"from {ip_b}" in all_hosts.stdout, all_hosts.stdout
    print(f"\nbroadcast off: {blocked} broadcasts dropped at A's switch, none heard by B; unicast, ARP, multicast ok")


# -- storm guard --------------------------------------------------------------------------------------------------

FLOOD = r"""
import json, socket, sys, time
ifname, mac, count, limit_s = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
frame = b"\xff" * 6 + mac + b"\x88\xb5" + b"l2mesh storm test".ljust(46, b"\0")
started, sent, refused = time.monotonic(), 0, 0
while sent < count and time.monotonic() - started < limit_s:
    try:
        s.send(frame)
        sent += 1
    except OSError:
        refused += 1
        time.sleep(0.001)
print(json.dumps({"sent": sent, "refused": refused, "seconds": round(time.monotonic() - started, 3)}))
"""


def test_storm_guard_drops_a_broadcast_flood_and_the_network_keeps_working(topology: Topology) -> None:
    network_id, (a, b) = start_members(topology, network_number=45)
    tap_a = a.tap_name(network_id)
    ip_b = overlay_ip(45, 2)
    assert wait_until(lambda: a.ping(ip_b, timeout_s=1), 10, what="a -> b before")
    # A deep TAP queue, so the kernel hands the daemon the whole flood instead of dropping most of it.
    a.run("ip", "link", "set", "dev", tap_a, "txqueuelen", "30000")
    before = counter(a, network_id, "drops", "broadcast_storm")
    flood = python(a, FLOOD, tap_a, mac_of(a, network_id), "20000", "10", timeout_s=30)
    assert flood["sent"] == 20000, flood
    wait_until(lambda: counter(a, network_id, "drops", "broadcast_storm") > before, 10, what="broadcast_storm drops on A")

    def drained() -> bool:
        # A's daemon works through the queued flood at the machine's pace: wait until (nearly) every frame
        # is counted as flooded or dropped, not a fixed time.
        counters = switch_counters(a, network_id)
        return counters["drops"].get("broadcast_storm", 0) - before + counters["forwarded"].get("flood", 0) >= 20000 - 1000

    try:
        wait_until(drained, 15, what="the flood counted at A's switch")
    except AssertionError:
        pass  # the asserts below say what was counted
    counters_a = switch_counters(a, network_id)
    counters_b = switch_counters(b, network_id)
    stormed = counters_a["drops"]["broadcast_storm"] - before
    flooded = counters_a["forwarded"].get("flood", 0)
    print(f"\nstorm: sent {flood}; A dropped {stormed} as broadcast_storm, forwarded {flooded} floods; "
          f"B drops {counters_b['drops']}")
    assert 5000 <= flooded < 20000 - 1000
    assert stormed >= 20000 - flooded - 1000  # the rest was refused by the guard (a little may sit in queues)
    assert a.daemon is not None and a.daemon.poll() is None, "A's daemon died"
    assert b.daemon is not None and b.daemon.poll() is None, "B's daemon died"
    # The event is logged once for the source, however long the storm lasted.
    daemon_log = (topology.logs / "a-daemon.log").read_text(errors="replace")
    assert daemon_log.count("storm from") == 1, daemon_log[-3000:]
    assert wait_until(lambda: a.ping(ip_b, timeout_s=1), 10, what="a -> b after the storm")
    assert b.ping(overlay_ip(45, 1), timeout_s=1)
