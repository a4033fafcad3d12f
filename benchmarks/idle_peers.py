"""What a member holds per idle known peer: one 10,000-member network applied to a NodeCore, in process.

Issue 12's target: under 4 KiB of member memory per idle known member (one
that is listed in a config but exchanged no traffic), and nothing periodic
that costs O(all known members) per tick. No network, no root: the config is
built in memory (random public keys: node ids are hashes of them, nothing
checks that a key pair exists) and applied through the static-config seam.

Figures (one JSON object on stdout, also saved to benchmarks/results/):
- config_bytes_per_member: the NetworkConfig object itself (tracemalloc), what
  the controller's document costs once parsed, whoever holds it;
- apply_bytes_per_member: what applying it adds (peers, switch ports, ARP
  table, ...), tracemalloc, after a collection;
- peer_state_bytes_per_member: the part of that allocated in l2mesh/node/
  (the peer table: compact records, or full peers before issue 12);
- rss_*_bytes: the process's resident set before, with the config built, and
  with it applied (tracemalloc off for these, it costs memory itself);
- apply_s / reapply_changed_s / refresh_s: applying the config the first
  time, a new full config with one member changed, and a refresh that changed
  nothing but timestamps;
- delta_apply_changed_ms: applying a delta's result that renamed one member
  (median of 20; after the delta itself is verified and applied to the held
  config, which is netconf_delta.py's cost, ~1 ms at 10,000 members);
- name_table_delta_ms / name_table_full_s: the same delta followed by the
  edge's DNS name table, and that table built whole (a full config);
- idle_tick_ms: one NodeCore.tick with every member idle (median of 50).

Resident memory and times come from a fresh child process, before any
tracing.

Usage: .venv/bin/python benchmarks/idle_peers.py [--members N] [--no-save]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

from l2mesh.identity import Identity, PublicIdentity
from l2mesh.ids import make_network_id
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.netconf_delta import ConfigDelta, DeltaBase, MemberChanges, apply_delta, content_digest, member_hash
from l2mesh.node.core import NodeCore
from l2mesh.node.name_table import NameTable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.unit.recording: the do-nothing Transmit the unit tests use too
from tests.unit.recording import NullTransmit  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def build_config(me: Identity, network_id: int, count: int, revision: int = 1) -> NetworkConfig:
    """Us and count - 1 others, each with one managed IPv4, one endpoint and a name, as a controller issues them."""
    members = [MemberConfig(me.node_id, me.public, ips=("10.147.0.1/16",), endpoints=(("198.18.0.1", 9993),), name="me")]
    for number in range(2, count + 1):
        public = PublicIdentity(os.urandom(32), os.urandom(32))
        members.append(
            MemberConfig(
                public.node_id,
                public,
                ips=(f"10.147.{number // 256}.{number % 256}/16",),
                endpoints=((f"198.18.{number // 250}.{number % 250 + 1}", 9993),),
                name=f"member-{number}",
            )
        )
    return NetworkConfig(network_id=network_id, revision=revision, issued_to=me.node_id, members=tuple(members))


def traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure_traced(count: int) -> dict[str, object]:
    """Bytes per member, by tracemalloc: the config object, and what applying it adds."""
    me = Identity.generate()
    network_id = make_network_id(Identity.generate().node_id, 1)
    tracemalloc.start()
    base = traced_bytes()
    config = build_config(me, network_id, count)
    with_config = traced_bytes()
    core = NodeCore(me, NullTransmit(), wall_clock_s=lambda: 0.0)
    with_core = traced_bytes()
    before = tracemalloc.take_snapshot()
    assert core.apply_netconf(config)
    core.events.clear()
    applied = traced_bytes()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_file: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        name = stat.traceback[0].filename
        if "l2mesh/" in name:
            name = name[name.rindex("l2mesh/") :]
        per_file[name] = per_file.get(name, 0) + stat.size_diff
    others = count - 1
    return {
        "config_bytes_per_member": round((with_config - base) / others),
        "apply_bytes_per_member": round((applied - with_core) / others),
        "peer_state_bytes_per_member": round(
            sum(size for name, size in per_file.items() if name.startswith(("l2mesh/node/peer", "<string>"))) / others
        ),
        "apply_bytes_by_file": dict(sorted(per_file.items(), key=lambda item: -item[1])[:6]),
    }


def measure_untraced(count: int) -> dict[str, object]:
    """Resident memory and times, in a fresh process (tracemalloc and earlier runs would skew the RSS)."""
    me = Identity.generate()
    network_id = make_network_id(Identity.generate().node_id, 1)
    results: dict[str, object] = {"rss_start_bytes": rss_bytes()}
    config = build_config(me, network_id, count)
    gc.collect()
    results["rss_with_config_bytes"] = rss_config = rss_bytes()
    core = NodeCore(me, NullTransmit(), wall_clock_s=lambda: 0.0)
    started = time.perf_counter()
    assert core.apply_netconf(config)
    results["apply_s"] = round(time.perf_counter() - started, 3)
    gc.collect()
    results["rss_applied_bytes"] = rss_applied = rss_bytes()
    results["rss_apply_bytes_per_member"] = round((rss_applied - rss_config) / (count - 1))

    last = config.members[-1]
    renamed = MemberConfig(last.node_id, last.identity, ips=last.ips, name="renamed")
    started = time.perf_counter()
    assert core.apply_netconf(config.with_changes(revision=2, members=(*config.members[:-1], renamed)))
    results["reapply_changed_s"] = round(time.perf_counter() - started, 3)
    current = core.networks[network_id].config
    assert current is not None
    started = time.perf_counter()
    assert core.apply_netconf(current.with_changes(timestamp_s=1.0))
    results["refresh_s"] = round(time.perf_counter() - started, 3)
    refreshed = core.networks[network_id].config
    assert refreshed is not None
    core_s, table_s = one_member_delta_s(core, refreshed, renamed)
    results["delta_apply_changed_ms"] = round(core_s * 1000, 3)
    results["name_table_delta_ms"] = round(table_s * 1000, 3)
    started = time.perf_counter()
    NameTable.from_config(refreshed)
    results["name_table_full_s"] = round(time.perf_counter() - started, 3)

    ticks = []
    for second in range(50):
        started = time.perf_counter()
        core.tick(1.0 + second)
        ticks.append(time.perf_counter() - started)
    results["idle_tick_ms"] = round(statistics.median(ticks) * 1000, 3)
    results["sessions"] = len(core.table.sessions)
    return results


def one_member_delta_s(core: NodeCore, held: NetworkConfig, member: MemberConfig, repeats: int = 20) -> tuple[float, float]:
    """Median seconds to apply a delta renaming one member (as membership.py hands it over: the result and
    what it changed), after the delta was verified and applied to the held config (not counted here): in
    the core, and in the edge's DNS name table."""
    table = NameTable.from_config(held)
    times, table_times = [], []
    for step in range(repeats):
        member = MemberConfig(member.node_id, member.identity, ips=member.ips, name=f"renamed-{step}")
        base = DeltaBase.of(held)
        delta_sum = base.members_sum - member_hash(held.members[-1], held.network_id) + member_hash(member, held.network_id)
        result = held.with_changes(revision=held.revision + 1, members=(*held.members[:-1], member))
        delta = ConfigDelta(
            held.network_id, held.revision, held.revision + 1, held.timestamp_s, held.expires_s,
            content_digest(result, delta_sum % (1 << 256)), members=(member,),
        )
        applied = apply_delta(base, delta).config
        changes = MemberChanges.of(base, applied, delta)
        started = time.perf_counter()
        assert core.nets.apply_config(applied, None, 0.0, changes)
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        table.apply(changes)
        table_times.append(time.perf_counter() - started)
        held = applied
    return statistics.median(times), statistics.median(table_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000, help="members in the network, us included (default 10000)")
    parser.add_argument("--no-save", action="store_true", help="print only, write no result file")
    parser.add_argument("--untraced-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.members < 2:
        parser.error("--members must be at least 2")
    if args.untraced_only:
        print(json.dumps(measure_untraced(args.members)))
        return 0
    child = subprocess.run(
        [sys.executable, __file__, "--members", str(args.members), "--untraced-only"],
        capture_output=True, text=True, check=True,
    )
    results = {"members": args.members, **json.loads(child.stdout), **measure_traced(args.members)}
    print(json.dumps(results, indent=2))
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        (RESULTS_DIR / f"idle_peers-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
