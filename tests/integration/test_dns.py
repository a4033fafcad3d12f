"""Issue 14 acceptance: every member answers DNS for the network's domain on its overlay address (real dig, namespaces)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.integration.topology import Host, Topology, add_controller, network_status, wait_until

POOL = "10.147.17.0/24"
_STATUS_RE = re.compile(r"status: ([A-Z]+)")


def dig(asker: Host, server: str, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
    """(rcode, answers) of one query, as dig sees them: UDP, one try, no recursion asked."""
    result = asker.run("dig", "+tries=1", "+time=2", "+norecurse", "+noall", "+comments", "+answer",
                       f"@{server}", name, rdtype, check=False)
    status = _STATUS_RE.search(result.stdout)
    answers = [line.split()[-1] for line in result.stdout.splitlines() if line and not line.startswith(";")]
    return (status.group(1) if status else f"no answer (dig exit {result.returncode})"), answers


def network_entry(host: Host, network_id: str) -> dict[str, Any]:
    return next(n for n in json.loads(host.l2mesh("networks", "--json").stdout) if n["id"] == network_id)


def test_members_answer_for_names_and_ids_and_follow_address_changes_renames_and_deletions_within_a_second(topology: Topology) -> None:
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "lab", "--pool", POOL).stdout.strip()
    hosts = {name: topology.add_host(name) for name in ("n1", "n2")}
    for index, (name, host) in enumerate(hosts.items(), start=1):
        controller.ctl("member", "authorize", network_id, host.node_id, "--ip", f"10.147.17.{index}", "--name", name)
        host.start_daemon()
        host.l2mesh("join", network_id, "--controller", controller.endpoint)
    for name, host in hosts.items():
        wait_until(lambda h=host: network_status(h, network_id) == "OK", 15, what=f"{name} OK")
    n1, n2 = hosts["n1"], hosts["n2"]
    wait_until(lambda: network_entry(n1, network_id)["dns"] == ["10.147.17.1:53"], 5, what="n1 answering DNS")
    assert network_entry(n1, network_id)["dns_domain"] == "lab.l2mesh"

    # n1 asks itself; n2 asks n1 across the overlay; both by name and by node id.
    assert dig(n1, "10.147.17.1", "n2.lab.l2mesh") == ("NOERROR", ["10.147.17.2"])
    wait_until(lambda: dig(n2, "10.147.17.1", "n2.lab.l2mesh") == ("NOERROR", ["10.147.17.2"]), 10, what="n1 answering n2 over the overlay")
    assert dig(n2, "10.147.17.2", f"{n1.node_id}.lab.l2mesh") == ("NOERROR", ["10.147.17.1"])
    assert dig(n1, "10.147.17.1", "nobody.lab.l2mesh")[0] == "NXDOMAIN"
    assert dig(n1, "10.147.17.1", "example.org")[0] == "REFUSED"

    # The admin gives n2 another address: every member answers with it within a second.
    controller.ctl("member", "authorize", network_id, n2.node_id, "--ip", "10.147.17.22")
    changed = time.monotonic()
    wait_until(lambda: dig(n1, "10.147.17.1", "n2.lab.l2mesh") == ("NOERROR", ["10.147.17.22"]), 1.0, interval_s=0.05,
               what="the new address within a second")
    print(f"new address answered {time.monotonic() - changed:.3f} s after the admin command returned")
    # A rename through `member authorize` on the existing member: the old name goes, the new one answers.
    controller.ctl("member", "authorize", network_id, n2.node_id, "--name", "Build Server")
    wait_until(lambda: dig(n1, "10.147.17.1", "build-server.lab.l2mesh") == ("NOERROR", ["10.147.17.22"]), 1.0, interval_s=0.05,
               what="the new name within a second")
    assert dig(n1, "10.147.17.1", "n2.lab.l2mesh")[0] == "NXDOMAIN"

    # A new domain for the network.
    controller.ctl("network", "update", network_id, "--dns-domain", "corp.example")
    wait_until(lambda: dig(n1, "10.147.17.1", "n1.corp.example") == ("NOERROR", ["10.147.17.1"]), 1.0, interval_s=0.05,
               what="the new domain within a second")
    assert dig(n1, "10.147.17.1", "n1.lab.l2mesh")[0] == "REFUSED"
    assert network_entry(n1, network_id)["dns_domain"] == "corp.example"

    # Deleted (or deauthorized): gone from every member's answers within a second.
    controller.ctl("member", "delete", network_id, n2.node_id)
    wait_until(lambda: dig(n1, "10.147.17.1", "build-server.corp.example")[0] == "NXDOMAIN", 1.0, interval_s=0.05,
               what="NXDOMAIN within a second of the deletion")
    assert dig(n1, "10.147.17.1", f"{n2.node_id}.corp.example")[0] == "NXDOMAIN"
    # n2 lost its config: it answers no more (its address is gone), and says so.
    wait_until(lambda: network_entry(n2, network_id)["dns"] == [], 5, what="n2 stopped answering")
    # systemd-resolved does not run in these namespaces: the daemon says why the host's resolver was not told.
    resolver = network_entry(n1, network_id)["resolver"]
    assert resolver is not None and resolver.startswith(("not set:", "systemd-resolved:"))
