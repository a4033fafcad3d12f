"""Issue 12: several controller instances on one database.

Two `l2mesh-ctl serve` instances, the second started from a copy of the
first one's state directory (same identity), share one database (the
`controller_db` fixture: one place to add PostgreSQL). Members joined
through instance A; a change made through B reaches them within a second
or two; A is SIGKILLed right after acknowledging a change, and its members
move to B within 5 s without losing the change, while pings between them
keep flowing (peer sessions never depended on the controller).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_roots_join import root_args, start_root
from tests.integration.topology import (
    L2MESH_CTL,
    Controller,
    Host,
    Topology,
    network_status,
    networks_of,
    wait_until,
)

FAILOVER_LIMIT_S = 5.0
PINGS = 40  # every 0.2 s: 8 s across the kill and the failover
PUSH_LIMIT_S = 2.0


@pytest.fixture(params=["sqlite", "postgresql"])
def controller_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL every instance is given: one SQLite file, or a schema on the worker's own PostgreSQL
    (tests/pg_server.py: Debian's server run as user postgres on a Unix socket, which the namespaces share)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    (tmp_path / "shared").mkdir()
    return f"sqlite://{tmp_path / 'shared' / 'controller.db'}"


class Instance(Controller):
    """A controller instance on the shared database, with its own log."""

    db_url: str = ""
    extra: tuple[str, ...] = ()

    def start(self) -> None:
        log_name = f"controller-{self.host.name}"
        self.process = self.host.popen(
            L2MESH_CTL, "serve", "--state-dir", str(self.state_dir), "--listen", f"0.0.0.0:{self.port}", "--db", self.db_url,
            *self.extra, log_name=log_name,
        )
        process = self.process
        wait_until(lambda: (self.state_dir / "api.json").exists() or process.poll() is not None, 15, what="controller API")
        if process.poll() is not None:
            raise AssertionError(f"controller exited: {self.host.topology.log_of(log_name)}")


def start_instance(
    topology: Topology, name: str, db_url: str, copy_of: Instance | None = None, extra: tuple[str, ...] = ()
) -> Instance:
    host = topology.add_host(name)
    state_dir = topology.work_dir / f"{name}-state"
    if copy_of is not None:
        # What an operator does: copy the first instance's state directory (identity and API token).
        shutil.copytree(copy_of.state_dir, state_dir, ignore=shutil.ignore_patterns("api.json", "controller.db*"))
    instance = Instance(host, state_dir)
    instance.db_url, instance.extra = db_url, extra
    instance.start()
    return instance


def controller_peer(host: Host) -> dict[str, Any] | None:
    peers = json.loads(host.l2mesh("peers", "--json").stdout)
    return next((p for p in peers if p.get("role") == "controller"), None)


def held_controllers(host: Host, network_id: str) -> list[str]:
    """The controller instances the member's last config lists (its cached signed copy: signature, then JSON)."""
    path = host.state_dir / "netconf" / f"{network_id}.signed"
    try:
        return list(json.loads(path.read_bytes()[64:]).get("controllers", []))
    except (OSError, ValueError):
        return []


def ips_of(host: Host, network_id: str) -> list[str]:
    return next((n["ips"] for n in networks_of(host) if n["id"] == network_id), [])


def test_two_instances_share_changes_and_members_fail_over_within_five_seconds_losing_nothing(
    topology: Topology, controller_db: str
) -> None:
    a = start_instance(topology, "ctla", controller_db)
    b = start_instance(topology, "ctlb", controller_db, copy_of=a)
    assert a.ctl_json("status")["id"] == b.ctl_json("status")["id"]  # one controller identity
    network_id = a.ctl("network", "create", "ha", "--pool", "10.147.40.0/24").stdout.strip()
    # B created nothing, yet serves the network A created: one database.
    wait_until(lambda: any(n["id"] == network_id for n in b.ctl_json("network", "list")), 3, what="network seen by B")

    m1, m2 = topology.add_host("m1"), topology.add_host("m2")
    for member in (m1, m2):
        member.start_daemon()
        a.ctl("member", "authorize", network_id, member.node_id)
        member.l2mesh("join", network_id, "--controller", a.endpoint)
    for member in (m1, m2):
        wait_until(lambda m=member: network_status(m, network_id) == "OK" and ips_of(m, network_id), 15, what=f"{member.name} OK")
        # Every member learns both instances from its config.
        wait_until(lambda m=member: {a.endpoint, b.endpoint} <= set(held_controllers(m, network_id)), 10,
                   what=f"{member.name} knows both instances")
    assert controller_peer(m1)["direct_endpoint"] == a.endpoint
    m2_ip = ips_of(m2, network_id)[0]
    assert wait_until(lambda: m1.ping(m2_ip, timeout_s=1), 10, what="m1 -> m2")

    # A change made through B reaches m1, which talks to A.
    started = time.monotonic()
    b.ctl("member", "authorize", network_id, m1.node_id, "--ip", "10.147.40.51")
    wait_until(lambda: "10.147.40.51" in ips_of(m1, network_id), PUSH_LIMIT_S, interval_s=0.05, what="B's change at m1 via A")
    push_s = time.monotonic() - started
    print(f"change through B reached A's member in {push_s:.2f} s")

    # A change acknowledged by A (one the pings below do not depend on), then A is SIGKILLed at once.
    a.ctl("network", "update", network_id, "--dns-domain", "before-kill.test")
    assert a.process is not None
    killed_at = time.monotonic()
    topology.stop_process(a.process, signal.SIGKILL)
    a.process = None

    # Pings run throughout, in their own process; the failover is timed from the member's own view.
    with ThreadPoolExecutor(1) as pool:
        pinging = pool.submit(m1.run, "ping", "-c", str(PINGS), "-i", "0.2", "-W", "1", m2_ip, check=False)

        def on_b() -> bool:
            peer = controller_peer(m1)
            return (
                peer is not None and peer["direct_endpoint"] == b.endpoint and peer["last_handshake_s"] is not None
                and peer["last_handshake_s"] <= time.monotonic() - killed_at
            )

        wait_until(on_b, 15, interval_s=0.05, what="m1 on instance B")
        failover_s = time.monotonic() - killed_at
        ping_output = pinging.result(timeout=PINGS).stdout
    received = int(re.search(r"(\d+) received", ping_output).group(1))  # type: ignore[union-attr]
    print(f"failover to instance B in {failover_s:.2f} s; {received}/{PINGS} pings answered across it")
    assert failover_s < FAILOVER_LIMIT_S
    assert received >= PINGS - 1
    assert network_status(m1, network_id) == "OK"

    # The change A acknowledged before dying is there: in B's view and at the members.
    assert next(n for n in b.ctl_json("network", "list") if n["id"] == network_id)["dns_domain"] == "before-kill.test"
    for member in (m1, m2):
        wait_until(lambda m=member: next(n for n in networks_of(m) if n["id"] == network_id)["dns_domain"] == "before-kill.test",
                   10, what=f"{member.name} holds the change acknowledged before the kill")
    # And B serves m1 now: a change there arrives.
    b.ctl("member", "authorize", network_id, m1.node_id, "--name", "after-failover", "--ip", "10.147.40.53")
    wait_until(lambda: "10.147.40.53" in ips_of(m1, network_id), PUSH_LIMIT_S, interval_s=0.05, what="B's change at m1 via B")


def test_members_that_know_only_the_roots_find_every_instance_there_and_fail_over(topology: Topology, controller_db: str) -> None:
    """Both instances register with one root under the shared id (each keeping its own session there);
    members join by network id alone and move to the other instance when theirs is SIGKILLed."""
    root = start_root(topology, "root1")
    extra = tuple(root_args([root]))
    a = start_instance(topology, "ctla", controller_db, extra=extra)
    b = start_instance(topology, "ctlb", controller_db, copy_of=a, extra=extra)
    network_id = a.ctl("network", "create", "ha", "--pool", "10.147.41.0/24").stdout.strip()
    for instance in (a, b):
        wait_until(lambda i=instance: [r["status"] for r in i.ctl_json("status")["roots"]] == ["up"], 15,
                   what=f"{instance.host.name} registered with the root")
    m1 = topology.add_host("m1")
    m1.start_daemon(*extra)
    a.ctl("member", "authorize", network_id, m1.node_id)
    m1.l2mesh("join", network_id)  # no --controller: the root says where the controller's instances are
    wait_until(lambda: network_status(m1, network_id) == "OK", 30, what="m1 OK through the root")
    wait_until(lambda: {a.endpoint, b.endpoint} <= set(held_controllers(m1, network_id)), 10, what="m1 knows both instances")
    peer = controller_peer(m1)
    assert peer is not None and peer["direct_endpoint"] in (a.endpoint, b.endpoint)
    used, other = (a, b) if peer["direct_endpoint"] == a.endpoint else (b, a)
    assert used.process is not None
    killed_at = time.monotonic()
    topology.stop_process(used.process, signal.SIGKILL)
    used.process = None

    def moved() -> bool:
        peer = controller_peer(m1)
        return peer is not None and peer["direct_endpoint"] == other.endpoint

    wait_until(moved, 15, interval_s=0.05, what="m1 on the other instance")
    failover_s = time.monotonic() - killed_at
    assert network_status(m1, network_id) == "OK"
    print(f"failover (joined through the root) in {failover_s:.2f} s")
    assert failover_s < FAILOVER_LIMIT_S
    other.ctl("member", "authorize", network_id, m1.node_id, "--ip", "10.147.41.77")
    wait_until(lambda: "10.147.41.77" in ips_of(m1, network_id), PUSH_LIMIT_S, interval_s=0.05, what="a change after failover")
