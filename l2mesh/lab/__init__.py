"""Namespace lab for tests, benchmarks and the demo; needs root; no daemon imports it.

    with Lab("l2mt-", work_dir) as lab:          # sweeps dead runs, claims a run id
        lab.add_router()                         # <tag>-rt, forwarding
        h1 = lab.add_host("h1")                  # <tag>-h1, 198.18.1.2 behind it
        proc = lab.start(h1.namespace, ["iperf3", "-s"], "iperf3")
        lab.run_in(h1.namespace, ["ping", "-c1", "198.18.1.1"])
    # every process stopped by PID, every namespace deleted, or TeardownError

Files: namespaces.py (Lab: names, links, hosts, teardown), processes.py
(started and stopped by PID), records.py (who owns a run), sweep.py (what
dead runs left), nat.py (home routers, UDP blocks), portmap.py (miniupnpd on
a home router) with stun.py (the STUN responder it needs), commands.py (short
commands, polling), environment.py, errors.py.
"""

from l2mesh.lab.commands import COMMAND_TIMEOUT_S, Runner, in_namespace, last_line, run, run_command, wait_until
from l2mesh.lab.environment import environment_problem
from l2mesh.lab.errors import LabError, TeardownError
from l2mesh.lab.namespaces import IFNAME_MAX, UNDERLAY_NET, Lab, NetnsHost, Teardown, check_ifname
from l2mesh.lab.nat import HOME_NET, NatRouter, add_nat_host, block_udp, unblock_udp
from l2mesh.lab.processes import STOP_GRACE_S, Proc, Processes, Stopped, is_running, process_start_ticks
from l2mesh.lab.records import RECORD_DIR, RunRecord, load_records
from l2mesh.lab.sweep import Swept, existing_namespaces, sweep

__all__ = [
    "COMMAND_TIMEOUT_S", "HOME_NET", "IFNAME_MAX", "RECORD_DIR", "STOP_GRACE_S", "UNDERLAY_NET",
    "Lab", "LabError", "NatRouter", "NetnsHost", "Proc", "Processes", "Runner", "RunRecord", "Stopped", "Swept",
    "Teardown", "TeardownError",
    "add_nat_host", "block_udp", "check_ifname", "environment_problem", "existing_namespaces", "in_namespace",
    "is_running", "last_line", "load_records", "process_start_ticks", "run", "run_command", "sweep", "unblock_udp",
    "wait_until",
]
