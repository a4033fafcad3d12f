"""Issue 16, crash loops: `kill -9` of the controller at random moments of a stream of admin changes, and of
a node daemon during joins and leaves; every restart must load its state, lose nothing it acknowledged,
and keep its identity.

Each loop runs CRASH_N kills (`make test`: a shorter run, see below; `make crashloop`: 200 each), from
the seed CRASH_SEED (default 16); the machinery is crash_harness.py. The controller runs alone in an
l2mt- namespace on loopback, its admin API driven over HTTP from a thread inside that namespace; the
node daemon runs in a lab topology with a real controller, driven through its control socket (what
`l2mesh join` and `l2mesh leave` send).
"""

from __future__ import annotations

import copy
import json
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from l2mesh.edge.node.control_client import call_daemon
from l2mesh.edge.node.tap import TapDevice
from l2mesh.lab import Lab, Proc
from tests.integration.crash_harness import (
    ANY,
    NotifySocket,
    Outcome,
    Verdict,
    Worker,
    crash_iterations,
    crash_seed,
    differences,
    log_size,
    log_since,
    run_crash_loop,
    temporary_files,
)
from tests.integration.topology import L2MESH, L2MESH_CTL, TEST_PREFIX, Controller, Host, Topology, add_controller

# Kills per loop in `make test` (CRASH_N overrides; `make crashloop` runs 200 of each). Each costs a
# restart: 1.1-1.9 s on the loaded 2-core machine, hence fewer on PostgreSQL.
SQLITE_KILLS = 30
POSTGRES_KILLS = 10
NODE_KILLS = 30

API = "127.0.0.1:9995"
MAX_NETWORKS = 5
NODE_IDS = [f"a{n:x}b2c3d4e5"[:10] for n in range(1, 9)]  # members that never ask: pre-authorized entries
MEMBER_NAMES = ["", "web", "db-1", "laptop"]
TAGS = ["guest", "ops", "db"]
RULES = ["", "accept\n", "drop tcp dport 22\naccept\n", "drop tcp src-tag guest\naccept\n"]
RUNTIME_MEMBER_FIELDS = ("last_seen", "endpoint", "online", "version")  # not admin data: a member's runtime facts


# -- the controller ------------------------------------------------------------------------------------
State = dict[str, dict[str, Any]]  # network id -> {"network": doc, "rules": text, "members": {node id: doc}}


@dataclass(frozen=True, repr=False)
class AdminChange:
    """One admin API request, and the network and member it is about ("" for none)."""

    kind: str
    method: str
    path: str
    body: dict[str, Any] | None
    network: str = ""
    member: str = ""

    def __repr__(self) -> str:
        return f"{self.method} {self.path} {json.dumps(self.body) if self.body is not None else ''}".strip()


def _network_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("members", "authorized")}  # the listing's counts


def _member_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in RUNTIME_MEMBER_FIELDS}


class AdminModel:
    """What the controller acknowledged; draws the next change from it."""

    def __init__(self) -> None:
        self.state: State = {}

    # -- drawing changes ---------------------------------------------------------------------------
    def draw(self, rng: random.Random) -> AdminChange:
        networks = sorted(self.state)
        if not networks or (len(networks) < MAX_NETWORKS and rng.random() < 0.12):
            body: dict[str, Any] = {"name": rng.choice(["lab", "office", "home"]), "pools": [self._pool(rng)]}
            if rng.random() < 0.3:
                body["mtu"] = rng.choice([1400, 2800])
            return AdminChange("create", "POST", "/networks", body)
        nid = rng.choice(networks)
        members = sorted(self.state[nid]["members"])
        roll = rng.random()
        if roll < 0.2:
            return AdminChange("network", "PATCH", f"/networks/{nid}", self._network_fields(rng), nid)
        if roll < 0.32:
            return AdminChange("rules", "PUT", f"/networks/{nid}/rules", {"rules": rng.choice(RULES)}, nid)
        if roll < 0.42 and members:
            node = rng.choice(members)
            return AdminChange("delete_member", "DELETE", f"/networks/{nid}/members/{node}", None, nid, node)
        if roll < 0.45 and len(networks) > 2:
            return AdminChange("delete_network", "DELETE", f"/networks/{nid}", None, nid)
        node = rng.choice(NODE_IDS)
        return AdminChange("member", "PATCH", f"/networks/{nid}/members/{node}", self._member_fields(rng, nid), nid, node)

    @staticmethod
    def _pool(rng: random.Random) -> str:
        return f"10.147.{rng.randint(100, 199)}.0/24"

    def _network_fields(self, rng: random.Random) -> dict[str, Any]:
        choices: dict[str, Any] = {
            "name": rng.choice(["lab", "office", "home", "renamed"]),
            "mtu": rng.choice([1280, 1400, 2800]),
            "multicast_limit": rng.choice([None, 8, 64]),
            "broadcast": rng.random() < 0.5,
            "private": rng.random() < 0.8,
            "pools": [self._pool(rng)],
        }
        keys = rng.sample(sorted(choices), rng.randint(1, 3))
        return {k: choices[k] for k in keys}

    def _member_fields(self, rng: random.Random, nid: str) -> dict[str, Any]:
        pool = self.state[nid]["network"]["pools"]
        prefix = pool[0].rsplit(".", 1)[0] if pool else "10.147.1"
        choices: dict[str, Any] = {
            "authorized": rng.random() < 0.7,
            "name": rng.choice(MEMBER_NAMES),
            "tags": rng.sample(TAGS, rng.randint(0, 2)),
            "ips": rng.choice([[], [f"{prefix}.{rng.randint(10, 40)}"]]),  # a taken address is refused (409)
            "bridge": rng.random() < 0.2,
        }
        keys = rng.sample(sorted(choices), rng.randint(1, 3))
        return {k: choices[k] for k in keys}

    # -- following answers ---------------------------------------------------------------------------
    def acknowledged(self, change: AdminChange, doc: Any) -> None:
        """The controller answered 2xx: this is now part of what it must keep."""
        state, nid = self.state, change.network
        if change.kind == "create":
            state[doc["id"]] = {"network": _network_doc(doc), "rules": "", "members": {}}
        elif change.kind == "network":
            state[nid]["network"] = _network_doc(doc)
        elif change.kind == "rules":
            network = state[nid]
            network["rules"] = doc["text"]
            network["network"].update(revision=doc["revision"], rules=len(doc["rules"]))
        elif change.kind == "member":
            state[nid]["members"][change.member] = _member_doc(doc)
        elif change.kind == "delete_member":
            del state[nid]["members"][change.member]
            state[nid]["network"]["revision"] += 1
        elif change.kind == "delete_network":
            del state[nid]

    def expected_if_applied(self, change: AdminChange, actual: State) -> State:
        """The acknowledged state with the in-doubt change applied whole (ANY where the controller chooses)."""
        state = copy.deepcopy(self.state)
        body = change.body or {}
        if change.kind == "create":
            new = sorted(set(actual) - set(state))
            key = new[0] if len(new) == 1 else "<the created network>"
            network = {k: ANY for k in ("id", "routes", "dns_domain", "mtu", "multicast_limit", "broadcast", "private", "revision", "created")}
            network.update(name=body["name"], pools=body["pools"], rules=0, **({"mtu": body["mtu"]} if "mtu" in body else {}))
            state[key] = {"network": network, "rules": "", "members": {}}
            return state
        if change.kind == "delete_network":
            state.pop(change.network, None)
            return state
        target = state[change.network]
        network = target["network"]
        if change.kind == "network":
            network.update(body, revision=network["revision"] + 1)
            if "name" in body:
                network["dns_domain"] = ANY  # `<name>.l2mesh` unless one was set
        elif change.kind == "rules":
            target["rules"] = body["rules"]
            network.update(revision=network["revision"] + 1, rules=ANY)
        elif change.kind == "delete_member":
            del target["members"][change.member]
            network["revision"] += 1
        elif change.kind == "member":
            before = target["members"].get(change.member)
            member = dict(before) if before else {
                "id": change.member, "network": change.network, "authorized": False, "bridge": False, "ips": [],
                "tags": [], "cidrs": [], "name": "", "mac": ANY, "known": False,
            }
            member.update({k: v for k, v in body.items() if k in ("authorized", "bridge", "name")})
            if "tags" in body:
                member["tags"] = sorted(set(body["tags"]))
            if "ips" in body:
                member["ips"], member["cidrs"] = body["ips"], ANY
            elif not member["ips"]:
                member["ips"] = member["cidrs"] = ANY  # authorizing takes the lowest free pool address
            target["members"][change.member] = member
        return state

    def settle(self, actual: State, in_doubt: AdminChange | None) -> bool | None:
        """Check what the restarted controller holds, then adopt it; whether the in-doubt change took effect."""
        lost = differences(self.state, actual)
        applied: bool | None = None
        if in_doubt is not None:
            applied = bool(lost)
        if lost:
            if in_doubt is None:
                raise AssertionError("acknowledged admin changes lost or altered:\n  " + "\n  ".join(lost))
            partial = differences(self.expected_if_applied(in_doubt, actual), actual)
            if partial:
                raise AssertionError(
                    f"the change cut off by the kill ({in_doubt!r}) is neither absent nor whole:\n"
                    f"  as if absent:\n    " + "\n    ".join(lost) + "\n  as if applied:\n    " + "\n    ".join(partial)
                )
        self.state = actual
        return applied


class AdminClient:
    """The admin API over HTTP; every call runs on the worker thread, inside the controller's namespace."""

    def __init__(self, token: str) -> None:
        self.http = httpx.Client(base_url=f"http://{API}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30.0)

    def send(self, change: AdminChange) -> httpx.Response:
        return self.http.request(change.method, change.path, json=change.body)

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def state(self) -> State:
        state: State = {}
        for network in self.get("/networks"):
            nid = network["id"]
            members = {m["id"]: _member_doc(m) for m in self.get(f"/networks/{nid}/members")}
            state[nid] = {"network": _network_doc(network), "rules": self.get(f"/networks/{nid}/rules")["text"], "members": members}
        return state

    def close(self) -> None:
        self.http.close()


class CrashingController:
    """`l2mesh-ctl serve` alone in a namespace, on loopback, killed and restarted on one state directory."""

    def __init__(self, lab: Lab, state_dir: Path, notify: NotifySocket, db_url: str | None) -> None:
        self.lab = lab
        self.namespace = lab.add_namespace("ctl")
        self.state_dir = state_dir
        self.notify = notify
        self.db_url = db_url
        self.worker = Worker(self.namespace)
        self.model = AdminModel()
        self.process: Proc | None = None
        self.client: AdminClient | None = None
        self.kept: dict[str, bytes] = {}  # identity and API token, as first written
        self._log_offset = 0

    @property
    def log(self) -> Path:
        return self.lab.logs / "controller.log"

    def launch(self) -> None:
        self._log_offset = log_size(self.log)
        db = ["--db", self.db_url] if self.db_url else []
        self.process = self.lab.start(self.namespace, [
            *self.notify.env(), L2MESH_CTL, "serve", "--state-dir", str(self.state_dir),
            "--listen", "127.0.0.1:9994", "--api", API, *db,
        ], "controller")

    def start(self) -> None:
        self.launch()
        assert self.process is not None
        self.notify.wait_ready(self.process, lambda: log_since(self.log, self._log_offset)[-2000:])
        started_log = log_since(self.log, self._log_offset)
        assert "Traceback" not in started_log, started_log
        for name in ("identity.json", "api.token"):
            content = (self.state_dir / name).read_bytes()
            assert self.kept.setdefault(name, content) == content, f"{name} changed across a restart"
        if self.client is not None:
            self.worker.call(self.client.close)  # its connections died with the last process
        self.client = AdminClient(self.kept["api.token"].decode().strip())

    def kill(self) -> None:
        process, self.process = self.process, None
        assert process is not None and process.poll() is None, f"the controller exited by itself: {log_since(self.log, self._log_offset)[-2000:]}"
        self.lab.stop(process, signal.SIGKILL)

    def change(self, rng: random.Random) -> Outcome:
        assert self.client is not None
        change = self.model.draw(rng)
        began = time.monotonic()
        try:
            response = self.client.send(change)
        except httpx.TransportError:
            return Outcome(change, Verdict.IN_DOUBT, time.monotonic() - began)
        latency = time.monotonic() - began
        assert response.status_code < 500, f"{change!r}: {response.status_code} {response.text}"
        if response.status_code >= 400:
            return Outcome(change, Verdict.REFUSED, latency)
        self.model.acknowledged(change, response.json() if response.content else None)
        return Outcome(change, Verdict.ACKED, latency)

    def check(self, in_doubt: Any | None) -> bool | None:
        client = self.client
        assert client is not None
        actual = self.worker.call(client.state)
        return self.model.settle(actual, in_doubt)

    def stop(self) -> None:
        if self.process is not None:
            code = self.lab.stop(self.process, signal.SIGTERM)
            self.process = None
            assert code == 0, f"the controller's clean stop exited {code}"

    def close(self) -> None:
        if self.client is not None:
            self.worker.call(self.client.close)
        self.worker.close()


@pytest.fixture
def crash_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(TEST_PREFIX, tmp_path)
    try:
        yield lab
    finally:
        lab.close()


# Each loop is an xdist group of its own: the three run beside each other and beside the rest of the suite.
@pytest.mark.parametrize("backend", [
    pytest.param("sqlite", marks=pytest.mark.xdist_group("crash_loop_sqlite")),
    pytest.param("postgresql", marks=pytest.mark.xdist_group("crash_loop_postgresql")),
])
def test_controller_killed_at_random_moments_keeps_every_acknowledged_admin_change(
    crash_lab: Lab, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    db_url = str(request.getfixturevalue("pg_url")) if backend == "postgresql" else None
    notify = NotifySocket(tmp_path / "notify")
    controller = CrashingController(crash_lab, tmp_path / "ctl-state", notify, db_url)
    try:
        kills = crash_iterations(SQLITE_KILLS if backend == "sqlite" else POSTGRES_KILLS)
        stats = run_crash_loop(controller, kills, crash_seed())
        assert stats.iterations == kills
        assert stats.verdicts.get(Verdict.ACKED.value, 0) >= kills, "too few changes acknowledged to test anything"
        assert controller.model.state, "the loop ended with no network at all"
        controller.stop()
        # A kill mid-write leaves a temporary file; each start removes those of dead writers.
        assert temporary_files(controller.state_dir) == []
    finally:
        controller.close()
        notify.close()


# -- the node ------------------------------------------------------------------------------------------
JOIN_OPTION_KEYS = ("allow_default", "managed_routes", "exit_node", "subnet_router")
NETWORKS_ON_CONTROLLER = 4
TAP_REMAKES = 100  # without the fix, most remakes failed on this machine


def control_request(state_dir: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """One request on the daemon's control socket (what the `l2mesh` CLI sends); its reply, or None when
    none came (refused connection, or cut off by the kill). call_daemon folds the two into one error;
    here they differ: an answered refusal changed nothing, an unanswered request is in doubt."""
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30.0)
            client.connect(str(state_dir / "control.sock"))
            client.sendall((json.dumps(request) + "\n").encode())
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    reply: dict[str, Any] = json.loads(data)
    return reply


class CrashingNode:
    """`l2mesh daemon` in a member namespace, joining and leaving its controller's networks, killed and restarted."""

    def __init__(self, host: Host, controller: Controller, networks: list[str], notify: NotifySocket) -> None:
        self.host = host
        self.controller = controller
        self.networks = networks
        self.notify = notify
        self.worker = Worker()  # the control socket is a path: no namespace needed
        self.joined: dict[str, dict[str, bool]] = {}  # network id -> join options, as acknowledged
        self.identity = (host.state_dir / "identity.json").read_bytes()
        self.process: Proc | None = None
        self._log_offset = 0

    @property
    def log(self) -> Path:
        return self.host.topology.logs / "n-daemon.log"

    def launch(self) -> None:
        self._log_offset = log_size(self.log)
        self.process = self.host.popen(
            *self.notify.env(), L2MESH, "daemon", "--state-dir", str(self.host.state_dir), "--port", str(self.host.port),
            "--no-port-mapping", log_name="n-daemon",
        )

    def start(self) -> None:
        self.launch()
        assert self.process is not None
        self.notify.wait_ready(self.process, lambda: log_since(self.log, self._log_offset)[-2000:])
        started_log = log_since(self.log, self._log_offset)
        assert "Traceback" not in started_log, started_log

    def kill(self) -> None:
        process, self.process = self.process, None
        assert process is not None and process.poll() is None, f"the daemon exited by itself: {log_since(self.log, self._log_offset)[-2000:]}"
        self.host.topology.stop_process(process, signal.SIGKILL)

    def _draw(self, rng: random.Random) -> dict[str, Any]:
        if self.joined and rng.random() < 0.4:
            # Now and then a network it is not in: the daemon refuses, and nothing may change.
            target = rng.choice(sorted(self.joined)) if rng.random() < 0.9 else rng.choice(self.networks)
            return {"command": "leave", "network_id": target}
        options = {
            "allow_default": rng.random() < 0.2, "managed_routes": rng.random() < 0.8,
            "exit_node": rng.random() < 0.1, "subnet_router": rng.random() < 0.1,
        }
        return {"command": "join", "network_id": rng.choice(self.networks), "controller": self.controller.endpoint, "options": options}

    def change(self, rng: random.Random) -> Outcome:
        request = self._draw(rng)
        began = time.monotonic()
        reply = control_request(self.host.state_dir, request)
        latency = time.monotonic() - began
        if reply is None:
            return Outcome(request, Verdict.IN_DOUBT, latency)
        nid = request["network_id"]
        if not reply["ok"]:
            assert request["command"] == "leave" and nid not in self.joined, f"{request}: refused: {reply['error']}"
            return Outcome(request, Verdict.REFUSED, latency)
        if request["command"] == "join":
            self.joined[nid] = request["options"]
        else:
            del self.joined[nid]
        return Outcome(request, Verdict.ACKED, latency)

    def _actual(self) -> dict[str, dict[str, bool]]:
        status = call_daemon(self.host.state_dir, "status")
        assert status["id"] == self.host.node_id, f"node id changed: {status['id']} != {self.host.node_id}"
        assert (self.host.state_dir / "identity.json").read_bytes() == self.identity, "identity.json changed across a restart"
        networks = call_daemon(self.host.state_dir, "networks")
        without_tap = [n["id"] for n in networks if not n["iface"]]
        assert not without_tap, f"restored networks without their TAP: {without_tap}"
        return {n["id"]: {k: n[k] for k in JOIN_OPTION_KEYS} for n in networks}

    def check(self, in_doubt: Any | None) -> bool | None:
        actual = self._actual()
        lost = differences(self.joined, actual)
        applied: bool | None = None
        if in_doubt is not None:
            applied = bool(lost)
        if lost:
            if in_doubt is None:
                raise AssertionError("acknowledged joins or leaves lost:\n  " + "\n  ".join(lost))
            expected = dict(self.joined)
            if in_doubt["command"] == "join":
                expected[in_doubt["network_id"]] = in_doubt["options"]
            else:
                expected.pop(in_doubt["network_id"], None)
            partial = differences(expected, actual)
            assert not partial, f"the {in_doubt} cut off by the kill is neither absent nor whole: " + "; ".join(partial)
        self.joined = actual
        return applied

    def stop(self) -> None:
        if self.process is not None:
            code = self.host.topology.stop_process(self.process, signal.SIGTERM)
            self.process = None
            assert code == 0, f"the daemon's clean stop exited {code}"

    def close(self) -> None:
        self.worker.close()


def test_a_tap_closed_while_another_thread_starts_a_program_can_be_made_again_at_once(crash_lab: Lab) -> None:
    """Found by the node loop: `leave X; join X` failed with EBUSY when the daemon's host set-up thread was
    starting nft just then (its child still shared the closed TAP's descriptor); now the TAP waits that out."""
    worker = Worker(crash_lab.add_namespace("tap"))  # the TAP is made in the thread's namespace
    stop = threading.Event()

    def start_programs() -> None:
        while not stop.is_set():
            subprocess.run(["true"], check=True)

    spawner = threading.Thread(target=start_programs)
    spawner.start()

    def remake() -> None:
        for _ in range(TAP_REMAKES):
            TapDevice("l2mcrash0", b"\x02\x00\x00\x00\x00\x01", 1500).close()

    try:
        worker.call(remake)
    finally:
        stop.set()
        spawner.join()
        worker.close()


@pytest.mark.xdist_group("crash_loop_node")
def test_node_killed_during_joins_and_leaves_keeps_its_identity_and_every_acknowledged_join(topology: Topology, tmp_path: Path) -> None:
    controller = add_controller(topology)
    host = topology.add_host("n")
    networks = []
    for number in range(NETWORKS_ON_CONTROLLER):
        nid = controller.ctl("network", "create", f"crash{number}", "--pool", f"10.147.{60 + number}.0/24").stdout.strip()
        controller.ctl("member", "authorize", nid, host.node_id)
        networks.append(nid)
    notify = NotifySocket(tmp_path / "notify")
    node = CrashingNode(host, controller, networks, notify)
    try:
        kills = crash_iterations(NODE_KILLS)
        stats = run_crash_loop(node, kills, crash_seed())
        assert stats.iterations == kills
        # What the `l2mesh` CLI shows after all that: the same node, and its restored joins.
        assert host.status()["id"] == host.node_id
        listed = {n["id"] for n in json.loads(host.l2mesh("networks", "--json").stdout)}
        assert listed == set(node.joined)
        node.stop()
        # A kill mid-write leaves a temporary file; each start removes those of dead writers.
        assert temporary_files(host.state_dir) == []
    finally:
        node.close()
        notify.close()
