"""Issue 13 acceptance: flow rules set on the controller, enforced by real members in namespaces."""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from pathlib import Path

from tests.integration.topology import Controller, Host, Topology, add_controller, network_status, wait_until

PYTHON = sys.executable
RAWFRAMES = str(Path(__file__).with_name("rawframes.py"))
ISSUE_RULES = """\
# guests may not reach ssh anywhere, nor the 10.147.17.0/28 servers at all
drop tcp dport 22 src-tag guest
drop dst 10.147.17.0/28 src-tag guest
drop ethertype 0x88b5 not src-tag plc
accept
"""
# Outside 10.147.17.0/28, so that only the port rule stands between guests and the server.
ADDRESSES = {"server": "10.147.17.20", "guest": "10.147.17.30", "plain": "10.147.17.40", "plc": "10.147.17.50"}
TAGS = {"guest": ["guest"], "plc": ["plc"]}
CONNECT = (
    "import socket, sys\n"
    "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:\n"
    "    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
    "    assert s.recv(12).startswith(b'HTTP/1.0 200')\n"
)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def ruled_network(topology: Topology, names: list[str], rules: str) -> tuple[Controller, str, dict[str, Host]]:
    """A controller, a network with these rules, and members with ADDRESSES and TAGS, joined and OK."""
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "rules", "--pool", "10.147.17.0/24").stdout.strip()
    rules_file = topology.work_dir / "rules.txt"
    rules_file.write_text(rules)
    controller.ctl("network", "rules", network_id, "--file", str(rules_file))
    hosts = {name: topology.add_host(name) for name in names}
    for name, host in hosts.items():
        tags = [arg for tag in TAGS.get(name, []) for arg in ("--tag", tag)]
        controller.ctl("member", "authorize", network_id, host.node_id, "--ip", ADDRESSES[name], *tags)
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    for name, host in hosts.items():
        wait_until(lambda h=host: network_status(h, network_id) == "OK", 15, what=f"{name} OK")
        wait_until(lambda h=host, n=name: f" {ADDRESSES[n]}/" in h.run("ip", "-o", "addr", "show", "dev", h.tap_name(network_id)).stdout,
                   10, what=f"{name} address on its TAP")
    return controller, network_id, hosts


def serve_http(host: Host, port: int) -> None:
    """A TCP listener (python's http.server) on the member's overlay address, answering once it listens."""
    host.popen(PYTHON, "-m", "http.server", str(port), "--bind", ADDRESSES[host.name], log_name=f"{host.name}-http-{port}")
    wait_until(lambda: f"{ADDRESSES[host.name]}:{port} " in host.run("ss", "-Hltn").stdout, 10, what=f"{host.name} listening on {port}")


def connects(client: Host, server: Host, port: int, timeout_s: float = 3.0) -> bool:
    result = client.run(PYTHON, "-c", CONNECT, ADDRESSES[server.name], str(port), str(timeout_s), check=False, timeout_s=timeout_s + 10)
    return result.returncode == 0


def rule_counts(host: Host, network_id: str) -> dict[int, dict[str, int]]:
    report = json.loads(host.l2mesh("rules", network_id, "--json").stdout)
    return {rule["line"]: rule for rule in report["rules"]}


def test_a_guest_cannot_reach_ssh_but_pings_and_reaches_port_80_and_the_server_can_still_connect_to_it(topology: Topology) -> None:
    _, network_id, hosts = ruled_network(topology, ["server", "guest", "plain"], ISSUE_RULES)
    server, guest, plain = hosts["server"], hosts["guest"], hosts["plain"]
    serve_http(server, 22)
    serve_http(server, 80)
    assert wait_until(lambda: guest.ping(ADDRESSES["server"], timeout_s=1), 10, what="guest pings the server")
    assert wait_until(lambda: connects(guest, server, 80), 10, what="guest reaches port 80")
    assert not connects(guest, server, 22)
    assert connects(plain, server, 22)  # the rule is about guests only
    # The guest's own node refused to send the SYNs, and counted them under line 2.
    assert rule_counts(guest, network_id)[2]["outbound"] >= 1
    # A connection the server opens to a listener on the guest's port 22 works: the guest's replies pass.
    serve_http(guest, 22)
    assert connects(server, guest, 22)


def test_a_rules_change_takes_effect_on_every_member_within_a_second_and_spares_replies(topology: Topology) -> None:
    controller, network_id, hosts = ruled_network(topology, ["server", "guest", "plain"], ISSUE_RULES)
    server, guest = hosts["server"], hosts["guest"]
    serve_http(server, 80)
    serve_http(guest, 8080)
    assert wait_until(lambda: connects(guest, server, 80), 10, what="guest reaches port 80 before")
    revision = controller.ctl_json("network", "show", network_id)["revision"]
    rules_file = topology.work_dir / "no-tcp-for-guests.txt"
    rules_file.write_text("drop tcp src-tag guest   # guests open no TCP connections at all\naccept\n")
    started = time.time()
    changed = controller.ctl_json("network", "rules", network_id, "--file", str(rules_file))
    assert changed["revision"] > revision
    # From the moment the controller got the change (its log line), not from the CLI's start-up.
    requested = logged_at(topology.log_of("controller"), f"network {network_id}: flow rules change requested")
    assert requested is not None and requested >= started - 0.01
    for host in hosts.values():
        applied = wait_until(lambda h=host: applied_at(h, network_id, changed["revision"]), 5, what=f"{host.name} applied the rules")
        print(f"{host.name}: new rules applied {applied - requested:.3f} s after the controller got them, {applied - started:.3f} s after the CLI started")
        assert applied - requested < 1.0, f"{host.name} applied the new rules {applied - requested:.2f} s after the change"
    assert not connects(guest, server, 80)
    assert connects(server, guest, 8080)  # opened by the server: the guest's TCP replies pass
    assert guest.ping(ADDRESSES["server"], timeout_s=1)


def applied_at(host: Host, network_id: str, revision: int) -> float | None:
    """Wall time at which the member's daemon logged applying this revision of the network's config."""
    return logged_at(host.topology.log_of(f"{host.name}-daemon"), f"network {network_id}: OK, revision {revision},")


def logged_at(log: str, text: str) -> float | None:
    """Wall time of the last log line holding text (the l2mesh log format starts with local time to the ms)."""
    for line in reversed(log.splitlines()):
        if text in line and (match := LOG_TIME.match(line)):
            return datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def test_a_raw_88b5_frame_from_an_untagged_member_is_dropped_and_counted_and_one_from_a_plc_member_arrives(topology: Topology) -> None:
    _, network_id, hosts = ruled_network(topology, ["server", "plain", "plc"], ISSUE_RULES)
    server = hosts["server"]
    tap = server.tap_name(network_id)
    server_mac = next(n["mac"] for n in json.loads(server.l2mesh("networks", "--json").stdout) if n["id"] == network_id)
    receiver = server.popen(PYTHON, RAWFRAMES, "receive", tap, "0x88b5", "6", log_name="server-raw")
    wait_until(lambda: "listening" in topology.log_of("server-raw"), 10, what="raw receiver")
    for name in ("plain", "plc"):
        sender = hosts[name]
        sender.run(PYTHON, RAWFRAMES, "send", sender.tap_name(network_id), server_mac, "0x88b5", f"from {name}")
    wait_until(lambda: "from plc" in topology.log_of("server-raw"), 10, what="the plc member's frame")
    topology.stop_process(receiver)
    assert "from plain" not in topology.log_of("server-raw")
    assert rule_counts(hosts["plain"], network_id)[4]["outbound"] == 1  # dropped at the untagged sender, under line 4
    assert rule_counts(hosts["plc"], network_id)[4]["outbound"] == 0
    assert rule_counts(server, network_id)[5]["inbound"] >= 1  # the plc frame, accepted by the last rule


def test_rules_and_tags_are_stored_read_back_and_a_bad_file_stores_nothing(topology: Topology) -> None:
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "rules").stdout.strip()
    assert controller.ctl_json("network", "rules", network_id)["rules"] == []
    good = topology.work_dir / "good.txt"
    good.write_text(ISSUE_RULES)
    controller.ctl("network", "rules", network_id, "--file", str(good))
    stored = controller.ctl_json("network", "rules", network_id)
    assert stored["text"] == ISSUE_RULES
    assert [(r["line"], r["rule"]) for r in stored["rules"]][:2] == [(2, "drop tcp dport 22 src-tag guest"), (3, "drop dst 10.147.17.0/28 src-tag guest")]
    assert controller.ctl("network", "rules", network_id).stdout == ISSUE_RULES
    bad = topology.work_dir / "bad.txt"
    bad.write_text("accept udp\n\ndrop tcp dprt 22\n")
    refused = controller.ctl("network", "rules", network_id, "--file", str(bad), check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0 and "line 3" in refused.stderr and "dprt" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert controller.ctl_json("network", "rules", network_id)["text"] == ISSUE_RULES
    # Tags: given on authorize (repeatable), replaced by `member tag`, listed by `member list --json`.
    node_id = "0123456789"
    controller.ctl("member", "authorize", network_id, node_id, "--tag", "guest", "--tag", "wifi")
    listed = {m["id"]: m for m in controller.ctl_json("member", "list", network_id)}
    assert listed[node_id]["tags"] == ["guest", "wifi"]
    controller.ctl("member", "tag", network_id, node_id, "plc")
    assert controller.ctl_json("member", "show", network_id, node_id)[0]["tags"] == ["plc"]
    controller.ctl("member", "tag", network_id, node_id)
    assert controller.ctl_json("member", "show", network_id, node_id)[0]["tags"] == []
    bad_tag = controller.ctl("member", "tag", network_id, node_id, ".x", check=False)
    assert bad_tag.returncode != 0 and "Traceback" not in bad_tag.stderr
