"""End-to-end network benchmark: l2mesh against the raw path, kernel VXLAN and tinc.

This file owns `make bench`'s network half: a three-namespace topology
(h1 -- router -- h2, nothing in the root namespace, nothing routed outside),
bringing each system up and down in it, measuring one TCP stream h1 -> h2
(iperf3) and the round-trip time (ping), the overlay daemons' CPU use, and the
report (one JSON line per system and round on stdout, a rich table, and
benchmarks/results/net-<UTC timestamp>.json).

The machines this runs on are shared and an absolute Gbit/s figure moves from
run to run, so every system is measured in the same invocation, in interleaved
rounds, and l2mesh is read as a ratio to the raw path and to tinc: one TCP
stream, median of the rounds, tinc 1.0 in switch mode with its defaults.
l2mesh-rules is l2mesh again with the 20 flow rules of benchmarks/rules20.txt
(the last one accepts iperf3's TCP), read as a ratio to l2mesh in the same
round: what rules cost.

l2mesh is driven only through its CLI (`l2mesh id --json`, `l2mesh daemon
--static-netconf FILE`; for the relayed case `l2mesh-ctl serve`, `l2mesh join`
and friends): of l2mesh it imports only the namespace lab (l2mesh.lab,
which no daemon uses), so it measures what a user would run.

Latency at two ping rates, UDP packets per second and daemon RSS come from small_packets.py
(underlay, vxlan, tinc and l2mesh only; --no-small skips them).

Usage: .venv/bin/python benchmarks/net.py [--rounds N] [--only SYSTEM ...] [--no-small] [--small-time S]
       [--time S] [--settle S] [--keep-logs DIR] [--profile] [--daemon-arg=ARG ...]
Needs root, iproute2, iperf3 and ping; tinc is skipped when tincd is missing,
l2mesh-relay when nft is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from l2mesh.edge.reexec import OPTIMIZED_OPTIONS
from l2mesh.lab import Lab, LabError, Proc, Processes, block_udp, in_namespace, last_line, run, unblock_udp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nsbench, next to this script
import nsbench  # noqa: E402
import small_packets  # noqa: E402
from nsbench import (  # noqa: E402
    BIN, RESULTS_DIR, display_path, fail, log, machine_ticks, new_run, non_negative_float, positive_int, tool_version,
)

nsbench.set_program("net")

# ------------------------------------------------------------------ constants
# Underlay: one /24 per host of 198.18.0.0/15 (RFC 2544 benchmarking range), as nsbench.build_underlay numbers them.
UL_A, UL_B = "198.18.1.2", "198.18.2.2"
RT_A, RT_B = "198.18.1.1", "198.18.2.1"
# Overlay: 10.147.200.0/24 inside 10.147.0.0/16.
OV_A, OV_B = "10.147.200.1", "10.147.200.2"
OV_PREFIX = 24

PING_COUNT = 20
PING_INTERVAL_S = 0.05
UP_TIMEOUT_S = 30.0  # how long an overlay gets to answer its first ping
QUIET_PCT = 10  # "machine quiet": under 10 % of all CPUs busy
IPERF_PORT = 5201
# Where small_packets' ping and UDP figures are taken (the relayed systems would add minutes for no target).
SMALL_PACKET_SYSTEMS = ("underlay", "vxlan", "tinc", "l2mesh")
L2MESH_PORT = 9993
L2MESH_MTU = 2800
CTL_PORT = 9994  # l2mesh-relay: the controller in the router namespace
NFT_TABLE = "l2mb_block"  # l2mesh-relay: drops direct UDP h1 <-> h2 in the router (l2mesh.lab.block_udp's name for l2mb-)
NO_UDP_TABLE = "l2mb_no_udp"  # l2mesh-tcp: drops all UDP from and to h1 in the router
ROOT_PORT = 9993  # l2mesh-root-relay, l2mesh-tcp: the standalone root in the router namespace, UDP and TCP
RELAY_TARGET_RATIO = 0.5  # issue target: relayed throughput at least half of direct
RULES_TARGET_RATIO = 0.9  # issue 13: with 20 rules, at least 90 % of l2mesh without rules
RULES_FILE = Path(__file__).resolve().parent / "rules20.txt"
DAEMON_ARGS_ENV = "L2MESH_BENCH_DAEMON_ARGS"

L2MESH_EXE = BIN / "l2mesh"
DAEMON_MODULE = "l2mesh.edge.node.daemon"
# `l2mesh daemon` starts in the CLI's module, which re-executes the process under DAEMON_FLAGS into the daemon's own
# module (l2mesh/edge/reexec.py); that imports, in order, its entry (which defers what the daemon never uses), then the daemon's.
CLI_IMPORTS = ("l2mesh.cli.node",)
DAEMON_IMPORTS = ("l2mesh.cli.daemon_start", DAEMON_MODULE)
DAEMON_FLAGS = OPTIMIZED_OPTIONS  # the interpreter's options the daemon runs under

L2MESH_CTL_EXE = BIN / "l2mesh-ctl"
PY_SPY_EXE = BIN / "py-spy"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The relayed systems last: they borrow the router namespace the others route through.
SYSTEM_NAMES = ("underlay", "vxlan", "tinc", "l2mesh", "l2mesh-rules", "l2mesh-relay", "l2mesh-root-relay", "l2mesh-tcp")
# Read as a ratio to l2mesh measured just before them in the same round, and the target for it (None: reported only).
RATIO_TO_L2MESH_TARGETS: dict[str, float | None] = {
    "l2mesh-rules": RULES_TARGET_RATIO, "l2mesh-relay": RELAY_TARGET_RATIO, "l2mesh-root-relay": RELAY_TARGET_RATIO,
    "l2mesh-tcp": None,
}


# ------------------------------------------------------------------ topology
class Topology:
    """h1 (198.18.1.2) -- rt -- h2 (198.18.2.2): two hosts with no shared L2 segment, namespaces of the run's lab."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.h1, self.h2, self.rt = lab.name("h1"), lab.name("h2"), lab.name("rt")

    @property
    def names(self) -> list[str]:
        return [self.h1, self.h2, self.rt]

    def create(self) -> None:
        nsbench.build_underlay(self.lab, ("h1", "h2"), ports=("r-a", "r-b"), check=(("h1", "h2"),))


def link_mtu(ns: str, dev: str) -> int | None:
    done = run(["ip", "-j", "-n", ns, "link", "show", "dev", dev], timeout_s=10, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)[0].get("mtu")


# ------------------------------------------------------------------- systems
@dataclass
class Overlay:
    """What the measurement needs once a system is up."""

    target: str  # address in h2 that h1 pings and sends to
    device: str  # interface in h1 whose MTU is reported
    daemons: list[Proc] = field(default_factory=list)  # CPU sampled during iperf3


@dataclass
class Context:
    lab: Lab
    daemon_args: list[str]
    topo: Topology = field(init=False)

    def __post_init__(self) -> None:
        self.topo = Topology(self.lab)

    @property
    def procs(self) -> Processes:
        return self.lab.processes

    @property
    def work(self) -> Path:
        return self.lab.work_dir


class System:
    """One overlay. up() builds it in the topology, down() undoes exactly that."""

    name = ""
    layer = ""
    encrypted = False
    cipher = "none"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.dir = ctx.work / self.name

    def missing(self) -> str | None:
        """Why this system cannot run here, or None."""
        return None

    def up(self) -> Overlay:
        raise NotImplementedError

    def down(self) -> None:
        return None

    def report(self) -> dict[str, Any]:
        """Extra row fields, read while the system is still up (after the measurement, or after a failure)."""
        return {}

    def start_daemon(self, label: str, ns: str, argv: Sequence[str]) -> Proc:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.ctx.procs.start(label, in_namespace(ns, argv), log=self.dir / f"{label}.log")

    def stop_daemons(self, overlay: Overlay | None) -> None:
        for proc in overlay.daemons if overlay else []:
            self.ctx.procs.stop(proc)


class Underlay(System):
    """The routed veth path itself: the ceiling every overlay is compared to."""

    name, layer = "underlay", "L3"

    def up(self) -> Overlay:
        return Overlay(target=UL_B, device="eth0")


class Vxlan(System):
    """Kernel VXLAN, unicast to the other host: the cost of L2 encapsulation alone."""

    name, layer = "vxlan", "L2"
    DEV = "l2mbvx0"

    def up(self) -> Overlay:
        topo = self.ctx.topo
        for ns, local, remote, addr in ((topo.h1, UL_A, UL_B, OV_A), (topo.h2, UL_B, UL_A, OV_B)):
            run(["ip", "-n", ns, "link", "add", self.DEV, "type", "vxlan", "id", "147",
                 "local", local, "remote", remote, "dstport", "4789", "dev", "eth0"], 10)
            run(["ip", "-n", ns, "addr", "add", f"{addr}/{OV_PREFIX}", "dev", self.DEV], 10)
            run(["ip", "-n", ns, "link", "set", self.DEV, "up"], 10)
        return Overlay(target=OV_B, device=self.DEV)

    def down(self) -> None:
        for ns in (self.ctx.topo.h1, self.ctx.topo.h2):
            run(["ip", "-n", ns, "link", "del", self.DEV], 10, check=False)


class Tinc(System):
    """tinc 1.0, Mode = switch (L2), its defaults kept.

    tinc >= 1.0.30 defaults: aes-256-cbc, HMAC-SHA256 truncated to 4 bytes, no
    compression, PMTU discovery and MSS clamping on; the tap keeps MTU 1500.
    """

    name, layer, encrypted = "tinc", "L2", True
    cipher = "aes-256-cbc + hmac-sha256 truncated to 4 bytes (tinc 1.0.30+ defaults)"
    DEV = "l2mbtinc"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.overlay: Overlay | None = None

    def missing(self) -> str | None:
        return None if shutil.which("tincd") else "tincd not installed"

    def up(self) -> Overlay:
        h1, h2 = self.dir / "h1", self.dir / "h2"
        self.configure(h1, "h1", OV_A, "h2", UL_A)
        self.configure(h2, "h2", OV_B, None, UL_B)
        shutil.copy(h1 / "hosts" / "h1", h2 / "hosts" / "h1")
        shutil.copy(h2 / "hosts" / "h2", h1 / "hosts" / "h2")
        topo = self.ctx.topo
        # A pidfile each: tincd's default pidfile would be shared by both.
        daemons = [
            self.start_daemon("tinc-h2", topo.h2, ["tincd", "-D", "-d1", "-c", str(h2), f"--pidfile={h2}/tincd.pid"]),
            self.start_daemon("tinc-h1", topo.h1, ["tincd", "-D", "-d1", "-c", str(h1), f"--pidfile={h1}/tincd.pid"]),
        ]
        self.overlay = Overlay(target=OV_B, device=self.DEV, daemons=daemons)
        return self.overlay

    def configure(self, conf: Path, name: str, addr: str, connect_to: str | None, underlay: str) -> None:
        (conf / "hosts").mkdir(parents=True, exist_ok=True)
        lines = [f"Name = {name}", "Mode = switch", f"Interface = {self.DEV}"]
        if connect_to:
            lines.append(f"ConnectTo = {connect_to}")
        (conf / "tinc.conf").write_text("\n".join(lines) + "\n")
        up_script = conf / "tinc-up"
        up_script.write_text(f'#!/bin/sh\nip link set "$INTERFACE" up\nip addr add {addr}/{OV_PREFIX} dev "$INTERFACE"\n')
        up_script.chmod(0o755)
        # Keys once per run: RSA generation takes seconds and does not change what is measured.
        if not (conf / "rsa_key.priv").exists():
            (conf / "hosts" / name).write_text(f"Address = {underlay}\n")
            # stdin is /dev/null, so tincd takes its default key file names instead of asking.
            run(["tincd", "-c", str(conf), "-K", "2048"], timeout_s=120)

    def down(self) -> None:
        self.stop_daemons(self.overlay)
        self.overlay = None


class L2mesh(System):
    """l2mesh daemons with a static network config (no controller), h1 and h2 as members."""

    name, layer, encrypted = "l2mesh", "L2", True
    cipher = "ChaCha20-Poly1305 (Noise IK sessions)"

    rules = ""  # flow rules in the network config

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.overlay: Overlay | None = None
        self.identities: dict[str, dict[str, str]] = {}

    def missing(self) -> str | None:
        return None if os.access(L2MESH_EXE, os.X_OK) else f"{L2MESH_EXE} not found"

    def state_dir(self, host: str) -> Path:
        return self.dir / host / "state"

    def identity(self, host: str, ns: str) -> dict[str, str]:
        # Made once per run and kept across rounds, like tinc's keys.
        if host not in self.identities:
            self.state_dir(host).mkdir(parents=True, exist_ok=True)
            out = run(in_namespace(ns, [str(L2MESH_EXE), "id", "--state-dir", str(self.state_dir(host)), "--json"]), 30).stdout
            try:
                self.identities[host] = json.loads(out)
            except ValueError:
                raise LabError(f"l2mesh id --json printed no JSON: {last_line(out)}") from None
        return self.identities[host]

    def up(self) -> Overlay:
        topo = self.ctx.topo
        ids = {"h1": self.identity("h1", topo.h1), "h2": self.identity("h2", topo.h2)}
        network_id = ids["h1"]["id"] + "000001"  # controller part = h1's node id, network number 1
        daemons = []
        for host, ns in (("h2", topo.h2), ("h1", topo.h1)):
            netconf = self.dir / host / "netconf.json"
            netconf.write_text(json.dumps(network_config(network_id, ids, host, self.rules), indent=2) + "\n")
            argv = [str(L2MESH_EXE), "daemon", "--state-dir", str(self.state_dir(host)),
                    "--port", str(L2MESH_PORT), "--static-netconf", str(netconf), *self.ctx.daemon_args]
            daemons.append(self.start_daemon(f"l2mesh-{host}", ns, argv))
        # The daemon names its TAP "l2m" + the network id's first 8 hex digits.
        self.overlay = Overlay(target=OV_B, device="l2m" + network_id[:8], daemons=daemons)
        return self.overlay

    def down(self) -> None:
        self.stop_daemons(self.overlay)
        self.overlay = None


class L2meshRules(L2mesh):
    """l2mesh as above, with 20 flow rules that both members evaluate for every frame (the last one matches)."""

    name = "l2mesh-rules"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.rules = RULES_FILE.read_text()

    def report(self) -> dict[str, Any]:
        """Per rule, how many frames h2 received under it: proof that the rules were evaluated."""
        try:
            done = run(in_namespace(self.ctx.topo.h2, [str(L2MESH_EXE), "networks", "--json", "--state-dir", str(self.state_dir("h2"))]), 30)
            counts = {r["line"]: r["inbound"] for r in json.loads(done.stdout)[0]["rules"]}
        except (LabError, ValueError, LookupError) as exc:
            return {"rules_error": str(exc)}
        return {"rules_inbound_by_line": counts}


def network_config(network_id: str, ids: dict[str, dict[str, str]], issued_to: str, rules: str = "") -> dict[str, Any]:
    """l2mesh's NetworkConfig JSON for one member, unsigned (the daemon's --static-netconf input)."""
    members = [
        {"id": ids[host]["id"], "x25519": ids[host]["x25519"], "ed25519": ids[host]["ed25519"],
         "ips": [f"{addr}/{OV_PREFIX}"], "bridge": False, "endpoints": [f"{underlay}:{L2MESH_PORT}"], "name": host}
        for host, addr, underlay in (("h1", OV_A, UL_A), ("h2", OV_B, UL_B))
    ]
    return {
        "id": network_id, "revision": 1, "issued_to": ids[issued_to]["id"], "name": "bench",
        "mtu": L2MESH_MTU, "broadcast": True, "private": True, "multicast_limit": None,
        "routes": [], "timestamp": 0, "expires": 0, "members": members,
        **({"rules": rules} if rules else {}),
    }


class L2meshRelay(System):
    """l2mesh through its controller's relay: direct UDP between h1 and h2 is dropped in the router.

    The controller runs in the router namespace, so both members reach it on
    the router's own addresses (the input path) while every packet between
    them crosses the forward path, where an nftables table drops it. The
    members fall back to the relay (l2mesh node/paths.py), and every frame goes
    h1 -> controller -> h2. Everything is made fresh each round (state dirs,
    identities, network) and removed again: the router namespace is shared
    with the other systems.
    """

    name, layer, encrypted = "l2mesh-relay", "L2", True
    cipher = L2mesh.cipher

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.overlay: Overlay | None = None
        self.controller: Proc | None = None
        self.members: dict[str, Proc] = {}
        self.node_ids: dict[str, str] = {}
        self.network_id = ""
        self.blocked = False
        self.relay_up_s: float | None = None

    def missing(self) -> str | None:
        for exe in (L2MESH_EXE, L2MESH_CTL_EXE):
            if not os.access(exe, os.X_OK):
                return f"{exe} not found"
        return None if shutil.which("nft") else "nft not installed (Debian: apt-get install nftables)"

    @property
    def ctl_state(self) -> Path:
        return self.dir / "ctl" / "state"

    def state_dir(self, host: str) -> Path:
        return self.dir / host / "state"

    def host_ns(self, host: str) -> str:
        return self.ctx.topo.h1 if host == "h1" else self.ctx.topo.h2

    def ctl(self, *argv: str) -> str:
        """One admin command, inside the router namespace (the admin API listens on its loopback)."""
        return run(in_namespace(self.ctx.topo.rt, [str(L2MESH_CTL_EXE), *argv, "--state-dir", str(self.ctl_state)]), 30).stdout

    def node(self, host: str, *argv: str) -> str:
        return run(in_namespace(self.host_ns(host), [str(L2MESH_EXE), *argv, "--state-dir", str(self.state_dir(host))]), 30).stdout

    def node_json(self, host: str, *argv: str) -> Any:
        out = self.node(host, *argv, "--json")
        try:
            return json.loads(out)
        except ValueError:
            raise LabError(f"l2mesh {argv[0]} --json printed no JSON: {last_line(out)}") from None

    # -- up -----------------------------------------------------------------------------------
    def up(self) -> Overlay:
        try:
            return self._up()
        except Exception:
            # run_system has no overlay to show logs of yet.
            for proc in self.running():
                for line in proc.log_tail():
                    log(f"    {proc.label}: {line}")
            raise

    def _up(self) -> Overlay:
        self.relay_up_s = None
        for path in self.state_dirs():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        # Blocked before any member starts, so no direct path is ever proven.
        self.block()
        self.start_servers()
        created = self.ctl("network", "create", "bench", "--mtu", str(L2MESH_MTU), "--json")
        try:
            self.network_id = json.loads(created)["id"]
        except (ValueError, KeyError, TypeError):
            raise LabError(f"l2mesh-ctl network create --json printed no id: {last_line(created)}") from None
        for host, addr in (("h1", OV_A), ("h2", OV_B)):
            self.node_ids[host] = self.node_json(host, "id")["id"]
            self.ctl("member", "authorize", self.network_id, self.node_ids[host], "--ip", f"{addr}/{OV_PREFIX}", "--name", host)
        for host in ("h2", "h1"):
            argv = [str(L2MESH_EXE), "daemon", "--state-dir", str(self.state_dir(host)), "--port", str(L2MESH_PORT),
                    *self.member_args(host), *self.ctx.daemon_args]
            self.members[host] = self.start_daemon(f"{self.name}-{host}", self.host_ns(host), argv)
        for host in ("h2", "h1"):
            self.wait(f"{host}'s control socket", lambda h=host: (self.state_dir(h) / "control.sock").exists())
        for host in ("h1", "h2"):
            self.node(host, "join", self.network_id, *self.join_args(host))
        self.overlay = Overlay(target=OV_B, device="l2m" + self.network_id[:8], daemons=self.running())
        for host in ("h1", "h2"):
            self.wait(f"{host}'s network status OK", lambda h=host: self.network_status(h) == "OK")
        # The members only meet once a frame needs to go: ping until h1 uses the relay for h2 and gets answers.
        t0 = time.monotonic()
        self.wait(f"h1 -> h2 relayed ({self.relay_wanted()}) and answering ping",
                  lambda: self.ping_once() and self.relayed_as_wanted(self.peer_entry() or {}))
        self.relay_up_s = round(time.monotonic() - t0, 2)
        return self.overlay

    # -- what the relay variants change -------------------------------------------------------
    def state_dirs(self) -> list[Path]:
        return [self.ctl_state, self.state_dir("h1"), self.state_dir("h2")]

    def start_servers(self, *controller_args: str) -> None:
        """The controller in the router namespace, reachable from both hosts on the router's addresses."""
        self.controller = self.start_daemon(
            f"{self.name}-ctl", self.ctx.topo.rt,
            [str(L2MESH_CTL_EXE), "serve", "--state-dir", str(self.ctl_state), "--listen", f"0.0.0.0:{CTL_PORT}",
             *controller_args],
        )
        self.wait("the controller's api.json", lambda: (self.ctl_state / "api.json").exists())

    def member_args(self, host: str) -> list[str]:
        return []

    def join_args(self, host: str) -> list[str]:
        return ["--controller", f"{RT_A if host == 'h1' else RT_B}:{CTL_PORT}"]

    def relay_wanted(self) -> str:
        return f"h1's peers list {self.node_ids['h2']} with path relay"

    def relayed_as_wanted(self, peer: dict[str, Any]) -> bool:
        return peer.get("path") == "relay"

    def block(self) -> None:
        self.blocked = True  # from here on down() deletes the table, even if nft failed half-way
        block_udp(self.ctx.lab, self.ctx.topo.rt, UL_A, UL_B)  # counted: direct attempts were made, and dropped

    def unblock(self) -> None:
        if not self.blocked:
            return
        unblock_udp(self.ctx.lab, self.ctx.topo.rt)
        self.blocked = False

    def running(self) -> list[Proc]:
        return [p for p in (self.controller, self.members.get("h1"), self.members.get("h2")) if p is not None]

    def wait(self, what: str, condition: Any) -> None:
        """Poll condition until true; fails early when one of our processes died."""
        deadline = time.monotonic() + UP_TIMEOUT_S
        last_error = ""
        while True:
            for proc in self.running():
                if proc.popen.poll() is not None:
                    raise LabError(f"{proc.label} exited with code {proc.popen.returncode}: {proc.last_log_line()}")
            try:
                if condition():
                    return
            except LabError as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                raise LabError(f"timed out after {UP_TIMEOUT_S:g} s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
            time.sleep(0.2)

    def network_status(self, host: str) -> str | None:
        for network in self.node_json(host, "networks"):
            if network.get("id") == self.network_id:
                return network.get("status")
        return None

    def peer_entry(self) -> dict[str, Any] | None:
        """h1's `l2mesh peers --json` entry for h2."""
        return next((p for p in self.node_json("h1", "peers") if p.get("id") == self.node_ids.get("h2")), None)

    def ping_once(self) -> bool:
        return run(in_namespace(self.ctx.topo.h1, ["ping", "-c", "1", "-W", "1", OV_B]), 5, check=False).returncode == 0

    # -- report and down ----------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"relay_up_s": self.relay_up_s, "network_id": self.network_id or None}
        if self.controller is not None and self.controller.popen.poll() is None:
            try:
                status = json.loads(self.ctl("status", "--json"))
                out["relay"] = {key: status.get(key) for key in ("relayed_packets", "relayed_bytes", "drops")}
            except (LabError, ValueError) as exc:
                out["relay_error"] = f"l2mesh-ctl status --json: {exc}"
        if "h1" in self.members and self.members["h1"].popen.poll() is None:
            try:
                out["peer_h2"] = self.peer_entry()
            except LabError as exc:
                out["peer_h2_error"] = str(exc)
        if self.blocked:
            out["blocked_packets"] = self.blocked_packets()
        return out

    def blocked_packets(self) -> int | None:
        """Direct UDP h1 <-> h2 dropped by the block so far (both directions)."""
        return nft_counted_packets(self.ctx.topo.rt, NFT_TABLE)

    def down(self) -> None:
        try:
            for proc in reversed(self.running()):
                self.ctx.procs.stop(proc)
        finally:
            self.controller, self.members, self.overlay = None, {}, None
            self.network_id, self.node_ids = "", {}
            try:
                self.unblock()
            finally:
                for path in self.state_dirs():
                    shutil.rmtree(path, ignore_errors=True)


class L2meshRootRelay(L2meshRelay):
    """l2mesh through a standalone root (`l2mesh-ctl root`), direct UDP h1 <-> h2 dropped as for l2mesh-relay.

    Root and controller both run in the router namespace; the members are
    given only the root (`--root ID@ADDR:PORT`) and join by network id, the
    controller registers with the root, so the members find it there and
    relay through the root (roots come before the controller as relays).
    """

    name = "l2mesh-root-relay"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.root: Proc | None = None
        self.root_id = ""

    @property
    def root_state(self) -> Path:
        return self.dir / "root" / "state"

    def state_dirs(self) -> list[Path]:
        return [*super().state_dirs(), self.root_state]

    def root_spec(self, address: str) -> str:
        return f"{self.root_id}@{address}:{ROOT_PORT}"

    def start_servers(self, *controller_args: str) -> None:
        rt = self.ctx.topo.rt
        shown = run(in_namespace(rt, [str(L2MESH_CTL_EXE), "root", "--show-id", "--json", "--state-dir", str(self.root_state)]),
                    30).stdout
        try:
            self.root_id = json.loads(shown)["id"]
        except (ValueError, KeyError, TypeError):
            raise LabError(f"l2mesh-ctl root --show-id --json printed no id: {last_line(shown)}") from None
        self.root = self.start_daemon(
            f"{self.name}-root", rt,
            [str(L2MESH_CTL_EXE), "root", "--state-dir", str(self.root_state), "--listen", f"0.0.0.0:{ROOT_PORT}",
             "--tcp-listen", f"0.0.0.0:{ROOT_PORT}"],
        )
        super().start_servers("--root", self.root_spec(RT_A), *controller_args)

    def member_args(self, host: str) -> list[str]:
        return ["--root", self.root_spec(RT_A if host == "h1" else RT_B)]

    def join_args(self, host: str) -> list[str]:
        return []  # found through the root, as `l2mesh join NETID` users do

    def relay_wanted(self) -> str:
        return f"h1's peers list {self.node_ids['h2']} relayed by the root {self.root_id}"

    def relayed_as_wanted(self, peer: dict[str, Any]) -> bool:
        return peer.get("path") == "relay" and peer.get("relay") == self.root_id

    def running(self) -> list[Proc]:
        return [p for p in (self.root, *super().running()) if p is not None]

    def report(self) -> dict[str, Any]:
        out = super().report()
        if "h1" in self.members and self.members["h1"].popen.poll() is None:
            try:
                out["roots_h1"] = self.node_json("h1", "roots")
            except LabError as exc:
                out["roots_h1_error"] = str(exc)
        return out

    def down(self) -> None:
        try:
            super().down()
        finally:
            self.root, self.root_id = None, ""


class L2meshTcp(L2meshRootRelay):
    """l2mesh from a member whose network lets no UDP through at all: h1 reaches the root over TCP (the fallback).

    The router drops every UDP packet from and to h1 (forwarded, and to the
    router's own addresses, where root and controller listen), from before
    h1 starts. h1 falls back to TCP at the root's address and port, reaches
    the controller through the root and relays to h2 (UDP) through it.
    """

    name = "l2mesh-tcp"

    def block(self) -> None:
        self.blocked = True
        self.ctx.lab.nft(self.ctx.topo.rt, (
            f"table inet {NO_UDP_TABLE} {{\n"
            f"    chain input {{\n"
            f"        type filter hook input priority filter - 10; policy accept;\n"
            f"        ip saddr {UL_A} meta l4proto udp counter drop\n"
            f"    }}\n"
            f"    chain forward {{\n"
            f"        type filter hook forward priority filter - 10; policy accept;\n"
            f"        ip saddr {UL_A} meta l4proto udp counter drop\n"
            f"        ip daddr {UL_A} meta l4proto udp counter drop\n"
            f"    }}\n"
            f"    chain output {{\n"
            f"        type filter hook output priority filter - 10; policy accept;\n"
            f"        ip daddr {UL_A} meta l4proto udp counter drop\n"
            f"    }}\n"
            f"}}\n"
        ), "no-udp-h1")

    def unblock(self) -> None:
        if not self.blocked:
            return
        rt = self.ctx.topo.rt
        run(in_namespace(rt, ["nft", "delete", "table", "inet", NO_UDP_TABLE]), 10, check=False)
        if run(in_namespace(rt, ["nft", "list", "table", "inet", NO_UDP_TABLE]), 10, check=False).returncode == 0:
            raise LabError(f"could not delete nft table inet {NO_UDP_TABLE} in {rt}")
        self.blocked = False

    def blocked_packets(self) -> int | None:
        return nft_counted_packets(self.ctx.topo.rt, NO_UDP_TABLE)

    def relay_wanted(self) -> str:
        return f"{super().relay_wanted()}, h1 on TCP to it"

    def relayed_as_wanted(self, peer: dict[str, Any]) -> bool:
        if not super().relayed_as_wanted(peer):
            return False
        return any(r.get("tcp") and r.get("status") == "up" for r in self.node_json("h1", "roots"))


SYSTEM_CLASSES: dict[str, type[System]] = {
    cls.name: cls for cls in (Underlay, Vxlan, Tinc, L2mesh, L2meshRules, L2meshRelay, L2meshRootRelay, L2meshTcp)
}


def nft_counted_packets(ns: str, table: str) -> int | None:
    """Packets counted by the rules of an nftables table (what a block dropped)."""
    done = run(in_namespace(ns, ["nft", "-j", "list", "table", "inet", table]), 10, check=False)
    try:
        items = json.loads(done.stdout)["nftables"]
    except (ValueError, KeyError, TypeError):
        return None
    return sum(expr["counter"]["packets"] for item in items for expr in item.get("rule", {}).get("expr", [])
               if isinstance(expr, dict) and "counter" in expr)


# --------------------------------------------------------------- measurement
def cpu_ticks(pid: int) -> int:
    """utime + stime of a process in clock ticks (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name may contain spaces: fields are counted after its ")".
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def ping_rtt_ms(ns: str, target: str) -> float | None:
    done = run(in_namespace(ns, ["ping", "-q", "-c", str(PING_COUNT), "-i", str(PING_INTERVAL_S), target]), 20, check=False)
    match = re.search(r"= [\d.]+/([\d.]+)/", done.stdout)
    return float(match.group(1)) if match else None


def wait_reachable(ns: str, overlay: Overlay) -> None:
    """Until the target answers a ping (handshakes, ARP); fails early if a daemon dies."""
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        for proc in overlay.daemons:
            if proc.popen.poll() is not None:
                raise LabError(f"{proc.label} exited with code {proc.popen.returncode}: {proc.last_log_line()}")
        if run(in_namespace(ns, ["ping", "-c", "1", "-W", "1", overlay.target]), 5, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise LabError(f"overlay not reachable: {overlay.target} did not answer ping within {UP_TIMEOUT_S:g} s")


def start_iperf_server(ctx: Context, target: str) -> Proc:
    argv = in_namespace(ctx.topo.h2, ["iperf3", "-s", "-1", "-B", target])
    proc = ctx.procs.start("iperf3-server", argv, log=ctx.work / "iperf3-server.log")
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise LabError(f"iperf3 server exited: {proc.last_log_line()}")
        listening = run(in_namespace(ctx.topo.h2, ["ss", "-Htln", f"sport = :{IPERF_PORT}"]), 5, check=False).stdout
        if listening.strip():
            return proc
        time.sleep(0.1)
    ctx.procs.stop(proc)
    raise LabError("iperf3 server did not start listening within 5 s")


def iperf_client(ctx: Context, target: str, seconds: int, extra: Sequence[str] = ()) -> dict[str, Any]:
    argv = in_namespace(ctx.topo.h1, ["iperf3", "-c", target, "-t", str(seconds), "-J", "--connect-timeout", "5000", *extra])
    done = run(argv, timeout_s=seconds + 20, check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise LabError(f"iperf3 printed no JSON: {last_line(done.stderr)}") from None
    if report.get("error"):
        raise LabError(f"iperf3 failed: {report['error']}")
    return report


@dataclass
class Sample:
    """CPU counters around one iperf3 run."""

    wall: float
    busy: int
    daemons: dict[str, int]

    @classmethod
    def take(cls, daemons: list[Proc]) -> "Sample":
        return cls(time.monotonic(), machine_ticks()[0], {p.label: cpu_ticks(p.pid) for p in daemons})


def cpu_figures(before: Sample, after: Sample) -> tuple[dict[str, float] | None, float]:
    """Per-daemon and whole-machine CPU over the run, in % of one core."""
    seconds = max(after.wall - before.wall, 1e-6)

    def pct(ticks: int) -> float:
        return round(ticks / CLK_TCK / seconds * 100, 1)

    daemons = {label: pct(after.daemons[label] - before.daemons[label]) for label in before.daemons}
    return daemons or None, pct(after.busy - before.busy)


def measure(ctx: Context, overlay: Overlay, row: dict[str, Any], args: argparse.Namespace) -> None:
    """Fill row with RTT, throughput, CPU and memory figures for a system that is up, then the small-packet ones."""
    row["mtu"] = link_mtu(ctx.topo.h1, overlay.device)
    # The last 1 s sample before the run, in % of one core (near 0 for clean figures).
    row["idle_busy_pct"] = round(nsbench.wait_quiet(args.settle, QUIET_PCT) * 100 * (os.cpu_count() or 1), 1)
    row["rtt_ms"] = ping_rtt_ms(ctx.topo.h1, overlay.target)
    pids = {p.label: p.pid for p in overlay.daemons}
    row["rss_idle_bytes"] = {label: small_packets.rss_bytes(pid) for label, pid in pids.items()}
    with small_packets.RssPeak(pids) as peak:
        before = Sample.take(overlay.daemons)
        report = iperf_run(ctx, overlay.target, [], args.time)
        after = Sample.take(overlay.daemons)
        if not args.no_small and row["system"] in SMALL_PACKET_SYSTEMS:
            row.update(small_packets.measure_small(
                ctx.topo.h1, overlay.target, args.small_time,
                lambda extra, seconds: iperf_run(ctx, overlay.target, extra, seconds)))
    row["rss_load_bytes"] = peak.peak
    row["gbps"] = round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
    row["mss"] = report["start"].get("tcp_mss_default")
    row["retransmits"] = report["end"]["sum_sent"].get("retransmits")
    row["cpu_pct"], row["busy_pct"] = cpu_figures(before, after)


def iperf_run(ctx: Context, target: str, extra: list[str], seconds: int) -> dict[str, Any]:
    """One iperf3 client run h1 -> h2 against a one-shot server started for it."""
    server = start_iperf_server(ctx, target)
    try:
        return iperf_client(ctx, target, seconds, extra)
    finally:
        ctx.procs.stop(server)


def profile_sender(ctx: Context, overlay: Overlay, seconds: int, out: Path) -> dict[str, str]:
    """One extra, unrecorded iperf3 run with py-spy sampling h1's daemon.

    Kept out of the figures: py-spy pauses the daemon at every sample, which
    lowers its throughput. Returns the row fields: the profile's path, or why
    there is none (a failed profile does not make the measurement fail).
    """
    try:
        record_profile(ctx, overlay, seconds, out)
    except LabError as exc:
        log(f"profile failed: {exc}")
        return {"profile_error": str(exc)}
    return {"profile": str(out)}


def record_profile(ctx: Context, overlay: Overlay, seconds: int, out: Path) -> None:
    sender = next(p for p in overlay.daemons if p.label.endswith("-h1"))
    spy = ctx.procs.start(
        "py-spy",
        [str(PY_SPY_EXE), "record", "-p", str(sender.pid), "-d", str(seconds), "-o", str(out), "--format", "speedscope"],
        log=ctx.work / "py-spy.log",
    )
    server = start_iperf_server(ctx, overlay.target)
    try:
        iperf_client(ctx, overlay.target, seconds)
    finally:
        ctx.procs.stop(server)
    try:
        spy.popen.wait(30)
    except subprocess.TimeoutExpired:
        raise LabError("py-spy did not finish within 30 s after the run") from None
    finally:
        ctx.procs.stop(spy)
    if spy.popen.returncode != 0 or not out.exists():
        raise LabError(f"py-spy failed: {spy.last_log_line()}")


# ---------------------------------------------------------------------- runs
def base_row(system: System, round_no: int) -> dict[str, Any]:
    return {"system": system.name, "round": round_no, "layer": system.layer, "encrypted": system.encrypted,
            "cipher": system.cipher, "mtu": None, "gbps": None, "rtt_ms": None}


def run_system(
    ctx: Context, system: System, round_no: int, args: argparse.Namespace, profile_to: Path | None
) -> dict[str, Any]:
    """Bring one system up, measure it, tear it down; a failure becomes the row's error."""
    row = base_row(system, round_no)
    log(f"round {round_no}: {system.name} up")
    overlay: Overlay | None = None
    try:
        overlay = system.up()
        wait_reachable(ctx.topo.h1, overlay)
        log(f"round {round_no}: {system.name} reachable, measuring")
        measure(ctx, overlay, row, args)
        row.update(system_report(system))
        if profile_to is not None:
            log(f"round {round_no}: {system.name}: extra iperf3 run under py-spy")
            row.update(profile_sender(ctx, overlay, args.time, profile_to))
    except Exception as exc:  # one system failing, even on a bug here, must not end the run
        row["error"] = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        log(f"round {round_no}: {system.name} failed: {row['error']}")
        for proc in overlay.daemons if overlay else []:
            for line in proc.log_tail():
                log(f"    {proc.label}: {line}")
        row.update(system_report(system))
    finally:
        system.down()
    return row


def system_report(system: System) -> dict[str, Any]:
    try:
        return system.report()
    except Exception as exc:  # diagnostics only: never the reason a row fails
        return {"report_error": f"{type(exc).__name__}: {exc}"}


def run_rounds(
    ctx: Context, systems: list[System], args: argparse.Namespace, profile_to: Path | None
) -> list[dict[str, Any]]:
    # Interleaved (every system once per round) so slow drift in the machine's
    # load spreads over all systems instead of hitting one.
    rows = []
    for round_no in range(1, args.rounds + 1):
        this_round: dict[str, dict[str, Any]] = {}
        for system in systems:
            profile_here = profile_to if system.name == "l2mesh" and round_no == args.rounds else None
            row = run_system(ctx, system, round_no, args, profile_here)
            if system.name in RATIO_TO_L2MESH_TARGETS:
                # Against the plain l2mesh figure of the same round (measured just before), not a median.
                row["ratio_to_l2mesh"] = ratio(row["gbps"], this_round.get("l2mesh", {}).get("gbps"))
            this_round[system.name] = row
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


# ------------------------------------------------------------------- summary
def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def median_cpu(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Median % of one core per daemon label, over the rows that sampled it."""
    per_label: dict[str, list[float]] = {}
    for row in rows:
        for label, pct in (row.get("cpu_pct") or {}).items():
            per_label.setdefault(label, []).append(pct)
    return {label: statistics.median(values) for label, values in sorted(per_label.items())} or None


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def summarize(rows: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per system: medians over the rounds that measured, and ratios to underlay and tinc."""
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [r for r in rows if r["system"] == name]
        ok = [r for r in mine if r["gbps"] is not None]
        summary[name] = {
            "layer": mine[0]["layer"] if mine else None,
            "encrypted": mine[0]["encrypted"] if mine else None,
            "mtu": next((r["mtu"] for r in reversed(ok) if r["mtu"] is not None), None),
            "rounds_measured": len(ok),
            "median_gbps": median_or_none([r["gbps"] for r in ok]),
            "median_rtt_ms": median_or_none([r["rtt_ms"] for r in ok if r["rtt_ms"] is not None]),
            "median_retransmits": median_or_none([r["retransmits"] for r in ok if r.get("retransmits") is not None]),
            "median_cpu_pct": median_cpu(ok),
            "median_busy_pct": median_or_none([r["busy_pct"] for r in ok]),
            "errors": [r["error"] for r in mine if r.get("error")],
            **small_packets.summarize_small(ok),
        }
    base, tinc = summary.get("underlay", {}), summary.get("tinc", {})
    for entry in summary.values():
        entry["ratio_to_underlay"] = ratio(entry["median_gbps"], base.get("median_gbps"), 4)
        entry["ratio_to_tinc"] = ratio(entry["median_gbps"], tinc.get("median_gbps"))
        rtt, base_rtt = entry["median_rtt_ms"], base.get("median_rtt_ms")
        entry["rtt_added_ms"] = round(rtt - base_rtt, 3) if rtt is not None and base_rtt is not None else None
        entry["ratio_to_l2mesh"] = None
    for name, target in RATIO_TO_L2MESH_TARGETS.items():
        if name not in summary:
            continue
        entry = summary[name]
        per_round = [r["ratio_to_l2mesh"] for r in rows if r["system"] == name and r.get("ratio_to_l2mesh") is not None]
        entry["ratio_to_l2mesh_per_round"] = per_round
        entry["ratio_to_l2mesh"] = median_or_none(per_round)
        entry["ratio_to_l2mesh_target"] = target
        entry["target_met"] = None if entry["ratio_to_l2mesh"] is None or target is None else entry["ratio_to_l2mesh"] >= target
    if "l2mesh" in summary:
        summary["l2mesh"]["small_packet_targets"] = small_packets.judge(summary)
    return summary


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict[str, dict[str, Any]], rounds: int, seconds: int) -> None:
    table = Table(title=f"one TCP stream h1 -> h2, {seconds} s, median of {rounds} round(s)",
                  header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("system", "layer", "encrypted", "MTU", "Gbit/s", "x underlay", "x tinc", "x l2mesh", "RTT ms", "+RTT ms",
                   "daemon CPU %"):
        left = column in ("system", "layer", "encrypted", "daemon CPU %")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for name, s in summary.items():
        cpu = s["median_cpu_pct"]
        table.add_row(
            name, s["layer"] or "-", "yes" if s["encrypted"] else "no", fmt(s["mtu"], "d"),
            fmt(s["median_gbps"], ".2f"), fmt(s["ratio_to_underlay"], ".3f"), fmt(s["ratio_to_tinc"], ".2f"),
            fmt(s["ratio_to_l2mesh"], ".3f"), fmt(s["median_rtt_ms"], ".3f"), fmt(s["rtt_added_ms"], "+.3f"),
            " ".join(f"{label.rpartition('-')[2]}:{pct:.0f}" for label, pct in cpu.items()) if cpu else "-",
        )
    # Piped (make bench | tee), rich would wrap the table at 80 columns.
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
    console.print(table)
    for name, target in RATIO_TO_L2MESH_TARGETS.items():
        entry = summary.get(name)
        if entry and entry["ratio_to_l2mesh"] is not None:
            console.print(f"{name} / l2mesh (median of the per-round ratios "
                          f"{', '.join(f'{r:.3f}' for r in entry['ratio_to_l2mesh_per_round'])}): "
                          f"{entry['ratio_to_l2mesh']:.3f}, "
                          + ("no target (reported)" if target is None else
                             f"target >= {target:g}: {'met' if entry['target_met'] else 'NOT met'}"), markup=False)
    print_small_table(console, summary)
    for name, s in summary.items():
        if s["errors"]:
            console.print(f"{name}: {len(s['errors'])} failed round(s), last error: {s['errors'][-1]}", markup=False)


def print_small_table(console: Console, summary: dict[str, dict[str, Any]]) -> None:
    """small_packets' figures: ping at two rates, UDP pkt/s, daemon RSS; then issue 17's verdicts for l2mesh."""
    measured = {name: s for name, s in summary.items() if name in SMALL_PACKET_SYSTEMS and s.get("udp64", {}).get("pps")}
    if not measured:
        return
    table = Table(title="ping -i 0.2 / -i 0.01 avg/max, iperf3 -u -b 0 delivered, daemon RSS (medians)", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("system", "ping .2 ms", "ping .01 ms", "UDP 64 pkt/s (loss%)", "x raw", "UDP 1400 pkt/s (loss%)",
                   "RSS idle MiB", "RSS load MiB"):
        table.add_column(column, justify="left" if column == "system" else "right", no_wrap=True)
    raw64 = measured.get("underlay", {}).get("udp64", {}).get("pps")
    mib = 1024 * 1024
    for name, s in measured.items():
        slow, fast, u64, u1400 = s["ping_0_2"], s["ping_0_01"], s["udp64"], s["udp1400"]
        table.add_row(
            name, f"{fmt(slow['avg_ms'], '.3f')}/{fmt(slow['max_ms'], '.2f')}",
            f"{fmt(fast['avg_ms'], '.3f')}/{fmt(fast['max_ms'], '.2f')}",
            f"{fmt(u64['pps'], ',.0f')} ({fmt(u64['loss_pct'], '.1f')})", fmt(ratio(u64["pps"], raw64), ".3f"),
            f"{fmt(u1400['pps'], ',.0f')} ({fmt(u1400['loss_pct'], '.1f')})",
            fmt(s["rss_idle_bytes"] / mib if s["rss_idle_bytes"] else None, ".1f"),
            fmt(s["rss_load_bytes"] / mib if s["rss_load_bytes"] else None, ".1f"),
        )
    console.print(table)
    verdict = measured.get("l2mesh", {}).get("small_packet_targets")
    if verdict:

        def met(flag: bool | None) -> str:
            return "-" if flag is None else ("met" if flag else "NOT met")

        console.print(
            f"l2mesh added RTT -i 0.2 {fmt(verdict['ping_0_2_added_ms'], '+.3f')} ms (tinc "
            f"{fmt(verdict['ping_0_2_tinc_added_ms'], '+.3f')}): {met(verdict['ping_0_2_added_met'])}; "
            f"-i 0.01 {fmt(verdict['ping_0_01_added_ms'], '+.3f')} ms (tinc {fmt(verdict['ping_0_01_tinc_added_ms'], '+.3f')}): "
            f"{met(verdict['ping_0_01_added_met'])}; worst of 500 replies {fmt(verdict['worst_reply_ms'], '.2f')} ms "
            f"(allowed {verdict['worst_reply_allowed_ms']:.2f}): {met(verdict['worst_reply_met'])}; "
            f"UDP 64 B {fmt(verdict['udp64_ratio_to_underlay'], '.3f')} of underlay (target >= "
            f"{small_packets.UDP64_TARGET_RATIO}): {met(verdict['udp64_met'])}", markup=False)


def machine_info() -> dict[str, Any]:
    return nsbench.machine_info({
        "iperf3": tool_version(["iperf3", "--version"]),
        "tincd": tool_version(["tincd", "--version"]) if shutil.which("tincd") else None,
        "l2mesh": tool_version([str(L2MESH_EXE), "--version"]) if L2MESH_EXE.exists() else None,
    })


def write_results(path: Path, stamp: str, args: argparse.Namespace, machine: dict[str, Any],
                  rows: list[dict[str, Any]], summary: dict[str, dict[str, Any]], profile: str | None) -> None:
    head = {
        "options": {"rounds": args.rounds, "systems": list(summary), "time_s": args.time, "settle_s": args.settle,
                    "daemon_args": args.daemon_args, "profile": args.profile},
        "method": {"ping": f"-c {PING_COUNT} -i {PING_INTERVAL_S}, avg", "iperf3": "one TCP stream h1 -> h2, receiver bits/s",
                   "cpu_pct": "% of one core during iperf3", "quiet_pct_of_all_cpus": QUIET_PCT,
                   "l2mesh-relay": f"controller in the router namespace; direct UDP {UL_A} <-> {UL_B} dropped there "
                                   f"(nft table inet {NFT_TABLE}); ratio_to_l2mesh = relayed / direct l2mesh Gbit/s "
                                   "of the same round, summary: median over the rounds",
                   "l2mesh-root-relay": "standalone root and controller in the router namespace, members given only "
                                        "the root and joined by network id; direct UDP dropped as for l2mesh-relay; "
                                        "relayed through the root",
                   "l2mesh-tcp": f"as l2mesh-root-relay, and every UDP packet from and to {UL_A} dropped in the router "
                                 f"(nft table inet {NO_UDP_TABLE}): h1 reaches the root over TCP, h2 over UDP",
                   "l2mesh-rules": f"l2mesh with the flow rules of {RULES_FILE.name} (20; the last accepts the TCP); "
                                   "ratio_to_l2mesh as for l2mesh-relay"},
        "targets": {"relay_ratio_to_l2mesh_min": RELAY_TARGET_RATIO, "rules_ratio_to_l2mesh_min": RULES_TARGET_RATIO},
    }
    nsbench.write_results(path, "net", stamp, head, machine, {"rounds": rows, "summary": summary, "profile": profile})


# ---------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = nsbench.OneLineParser(prog="net.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=3, metavar="N",
                        help="measure every system N times, interleaved (default 3)")
    parser.add_argument("--only", nargs="+", choices=SYSTEM_NAMES, metavar="SYSTEM",
                        help=f"systems to run, of {', '.join(SYSTEM_NAMES)}; underlay is always run, as the reference")
    parser.add_argument("--time", type=positive_int, default=10, metavar="S", help="iperf3 seconds per run (default 10)")
    parser.add_argument("--settle", type=non_negative_float, default=10.0, metavar="S",
                        help="wait up to S seconds for the machine to be quiet before each measurement (default 10)")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy configs and daemon logs to DIR before cleanup")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy profile of h1's l2mesh daemon during one extra iperf3 run (needs .venv/bin/py-spy)")
    parser.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                        help=f"extra argument for `l2mesh daemon` (repeatable; write --daemon-arg=--flag); also ${DAEMON_ARGS_ENV}")
    parser.add_argument("--no-small", action="store_true",
                        help="skip the ping-rate, UDP pkt/s figures (small_packets.py)")
    parser.add_argument("--small-time", type=positive_int, default=5, metavar="S",
                        help="seconds per UDP flood (default 5)")
    args = parser.parse_args(argv)
    try:
        args.daemon_args = shlex.split(os.environ.get(DAEMON_ARGS_ENV, "")) + args.daemon_arg
    except ValueError as exc:
        parser.error(f"${DAEMON_ARGS_ENV}: {exc}")
    return args


def selected_systems(args: argparse.Namespace, ctx: Context) -> list[System]:
    # The underlay is the reference every ratio needs, and absolute figures
    # move between runs, so it is measured in every invocation.
    wanted = set(args.only or SYSTEM_NAMES) | {"underlay"}
    systems = []
    for name in SYSTEM_NAMES:
        if name not in wanted:
            continue
        system = SYSTEM_CLASSES[name](ctx)
        reason = system.missing()
        if reason:
            log(f"skipping {name}: {reason}")
            continue
        systems.append(system)
    return systems


def profile_target(args: argparse.Namespace, systems: list[System], stamp: str) -> Path | None:
    if not args.profile:
        return None
    if not any(s.name == "l2mesh" for s in systems):
        log("--profile: l2mesh is not among the systems run; no profile")
        return None
    if not os.access(PY_SPY_EXE, os.X_OK):
        log(f"--profile: {PY_SPY_EXE} not found; no profile (install py-spy into the venv to get one)")
        return None
    return RESULTS_DIR / f"net-{stamp}-l2mesh-h1.speedscope.json"


def cleanup(ctx: Context, keep_logs: Path | None) -> None:
    nsbench.cleanup(ctx.lab, keep_logs, "logs and configs")


def cache_bytecode(work_dir: Path) -> None:
    """Daemons started from here (they inherit this environment) load cached bytecode, as an installed one does.

    Both: `l2mesh daemon` starts unoptimized and re-executes itself under DAEMON_FLAGS (l2mesh/edge/reexec.py).
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work_dir / "pycache")
    for flags, modules in (((), CLI_IMPORTS), (DAEMON_FLAGS, DAEMON_IMPORTS)):
        subprocess.run([sys.executable, *flags, "-c", f"import {', '.join(modules)}"], check=True, timeout=120)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nsbench.require(("ping", "iperf3", "ss"), "iproute2 iputils-ping iperf3")

    machine = machine_info()
    stamp, lab = new_run()
    ctx = Context(lab, args.daemon_args)
    systems: list[System] = []
    rows: list[dict[str, Any]] = []

    def body() -> None:
        nonlocal systems, rows
        systems = selected_systems(args, ctx)
        profile_to = profile_target(args, systems, stamp)
        log(f"namespaces {', '.join(ctx.topo.names)}; load average {machine['loadavg']}, cpus {machine['nproc']}")
        if any(system.name.startswith("l2mesh") for system in systems):
            cache_bytecode(ctx.work)  # RSS as an installed daemon's, not one compiling its modules at start
        ctx.topo.create()
        rows = run_rounds(ctx, systems, args, profile_to)

    nsbench.guarded_run(body, lambda: cleanup(ctx, args.keep_logs))

    summary = summarize(rows, [s.name for s in systems])
    print_table(summary, args.rounds, args.time)
    profile = next((r["profile"] for r in rows if r.get("profile")), None)
    if profile:
        print(f"profile of h1's l2mesh daemon: {display_path(Path(profile))}")
    out = RESULTS_DIR / f"net-{stamp}.json"
    write_results(out, stamp, args, machine, rows, summary, profile)
    print(f"written {display_path(out)}")
    if summary.get("underlay", {}).get("median_gbps") is None:
        fail("the underlay was not measured; no figure is meaningful", 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
