"""`l2mesh`: the node CLI (identity, daemon, join/leave, status tables)."""

from __future__ import annotations

# First: what the daemon's dependencies import and never use stays out of the process (issue 17).
from l2mesh.edge import deferred_imports

deferred_imports.install()

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from l2mesh import __version__
from l2mesh.cli.completion import add_completion_command
from l2mesh.cli.exits import fail, say
from l2mesh.cli.common import (
    OneLineArgumentParser,
    add_state_dir_argument,
    endpoint_arg,
    positive_int,
    print_json,
    print_data,
    print_table,
    resolve_state_dir,
    run_parser,
)
from l2mesh.edge.identity_file import load_or_create_identity
from l2mesh.ids import format_network_id, format_node_id, parse_network_id
from l2mesh.edge.node.control_client import CLIENT_TIMEOUT_S, call_daemon, daemon_wait_s
from l2mesh.edge.node.options import OPTIONS_ENV, DaemonOptions
from l2mesh.edge.reexec import reexec_optimized
from l2mesh.ports import DEFAULT_NODE_PORT
from l2mesh.root_spec import ROOTS_ENV, parse_root_list

NODE_STATE_DIR_DEFAULT = "/var/lib/l2mesh"
DAEMON_START_MODULE = "l2mesh.cli.daemon_start"  # the daemon's own process (l2mesh/cli/daemon_start.py)


def ask_daemon(args: argparse.Namespace, command: str, **arguments: Any) -> Any:
    """One request to the daemon, waiting a few seconds for one that is starting (`l2mesh daemon & l2mesh join`)."""
    return call_daemon(resolve_state_dir(args), command, wait_s=daemon_wait_s(), notice=say, **arguments)


def cmd_id(args: argparse.Namespace) -> int:
    identity = load_or_create_identity(resolve_state_dir(args))
    if args.json:
        print_json(identity.public.to_json())
    else:
        print(format_node_id(identity.node_id))
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    options = DaemonOptions(
        resolve_state_dir(args), args.port, list(args.static_netconf), not args.no_offload,
        parse_root_list(args.root, os.environ.get(ROOTS_ENV)), port_mapping=not args.no_port_mapping,
        metrics_listen=args.metrics_listen,
    )
    if sys.argv[1:2] == ["daemon"]:  # this process's own command line (not main() called in-process)
        # Under -OO, the same PID, without the CLI in memory from here on (issue 17: idle RSS).
        reexec_optimized(DAEMON_START_MODULE, {OPTIONS_ENV: options.to_json()})
    # Imported here: the daemon's stack (trio, pyroute2, pytun) doubles every other command's start-up.
    from l2mesh.edge.node.daemon import run_daemon

    return run_daemon(options)


def cmd_status(args: argparse.Namespace) -> int:
    status = ask_daemon(args, "status")
    return print_data(
        args,
        status,
        ["node", "version", "UDP port", "networks", "peers", "uptime", "port mapping"],
        [[status["id"], status["version"], status["port"], status["networks"], status["peers"], f"{status['uptime_s']:.0f} s",
          _port_mapping_text(status.get("port_mapping"))]],
    )


def _port_mapping_text(mapping: dict[str, Any] | None) -> str:
    """'198.18.3.2:9993 (nat-pmp)', the state when nothing is mapped ('unavailable'), or 'off'."""
    if mapping is None:
        return "off"
    if mapping.get("external"):
        return f"{mapping['external']} ({mapping['protocol']})"
    return str(mapping.get("state"))


def cmd_join(args: argparse.Namespace) -> int:
    network_id = format_network_id(parse_network_id(args.network_id))
    options = {
        "allow_default": args.allow_default,
        "managed_routes": not args.no_managed_routes,
        "exit_node": args.exit_node,
        "subnet_router": args.subnet_router,
    }
    result = ask_daemon(args, "join", network_id=network_id, controller=args.controller or "", options=options)
    if args.json:
        print_json(result)
    else:
        print(f"200 join OK {result['id']} (controller {result['controller']}; see: l2mesh networks)")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    network_id = format_network_id(parse_network_id(args.network_id))
    result = ask_daemon(args, "leave", network_id=network_id)
    if args.json:
        print_json(result)
    else:
        print(f"200 leave OK {result['id']}")
    return 0


def cmd_networks(args: argparse.Namespace) -> int:
    networks = ask_daemon(args, "networks")
    return print_data(
        args,
        networks,
        ["network", "name", "status", "iface", "MAC", "IPs", "routes", "DNS", "role", "MTU"],
        [
            [n["id"], n["name"], n["status"], n["iface"], n["mac"], ", ".join(n["cidrs"]) or None, _routes_cell(n),
             n.get("dns_domain") if n.get("dns") else None, _role_cell(n), n["mtu"]]
            for n in networks
        ],
    )


def _routes_cell(network: dict[str, Any]) -> str | None:
    """Routes in force, then refused ones marked as such (the daemon's log says why)."""
    routes = [r["target"] if r["via"] is None else f"{r['target']} via {r['via']}" for r in network.get("routes", [])]
    routes += [f"{r['target']} (refused)" for r in network.get("routes_refused", [])]
    return ", ".join(routes) or None


def _role_cell(network: dict[str, Any]) -> str | None:
    roles = [role for key, role in (("exit_node", "exit node"), ("subnet_router", "subnet router")) if network.get(key)]
    if not roles:
        return None
    return " + ".join(roles) + ("" if network.get("forwarding") else " (not forwarding)")


def cmd_peers(args: argparse.Namespace) -> int:
    peers = ask_daemon(args, "peers")
    return print_data(
        args,
        peers,
        ["peer", "role", "path", "endpoint", "latency ms", "last handshake", "rx bytes", "tx bytes"],
        [
            [
                p["id"], p["role"], p["path"], p["endpoint"],
                None if p["latency_ms"] is None else f"{p['latency_ms']:.2f}",
                None if p["last_handshake_s"] is None else f"{p['last_handshake_s']:.0f} s ago",
                p["rx_bytes"], p["tx_bytes"],
            ]
            for p in peers
        ],
    )


def cmd_roots(args: argparse.Namespace) -> int:
    roots = ask_daemon(args, "roots")
    return print_data(
        args,
        roots,
        ["root", "endpoint", "status", "latency ms", "TCP", "sees us at"],
        [
            [
                r["id"], r["endpoint"], r["status"], None if r["latency_ms"] is None else f"{r['latency_ms']:.2f}",
                "yes" if r["tcp"] else "no", r["observed"],
            ]
            for r in roots
        ],
    )


def cmd_macs(args: argparse.Namespace) -> int:
    macs = ask_daemon(args, "macs")
    return print_data(
        args,
        macs,
        ["network", "MAC", "behind member", "kind", "age"],
        [[m["network"], m["mac"], m["member"], m["kind"], None if m["age_s"] is None else f"{m['age_s']:.0f} s"] for m in macs],
    )


def cmd_rules(args: argparse.Namespace) -> int:
    network_id = format_network_id(parse_network_id(args.network_id))
    report = ask_daemon(args, "rules", network_id=network_id)
    if args.json:
        print_json(report)
        return 0
    if not report["rules"]:
        print(f"network {report['id']}: no flow rules (every frame is accepted)")
        return 0
    print_table(
        f"network {report['id']}: flow rules, frames matched on this member",
        ["line", "rule", "sent", "received"],
        [[r["line"], r["rule"], r["outbound"], r["inbound"]] for r in report["rules"]]
        + [[None, "(no rule matched: accepted)", report["unmatched"]["outbound"], report["unmatched"]["inbound"]]],
    )
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    """Probes through the overlay session, one every --interval seconds: per reply the path and round trip."""
    state_dir = resolve_state_dir(args)
    replies: list[dict[str, Any]] = []
    name = args.node
    for seq in range(1, args.count + 1):
        started_s = time.monotonic()
        answer = call_daemon(
            state_dir, "ping", wait_s=daemon_wait_s() if seq == 1 else 0.0, notice=say,
            timeout_s=args.timeout + CLIENT_TIMEOUT_S, node=args.node, probe_timeout_s=args.timeout,
        )
        name = answer["id"]
        if answer.get("timeout"):
            if not args.json:
                print(f"timeout waiting for a reply from {name} ({args.timeout:g} s)", flush=True)
        else:
            reply = {"seq": seq, "id": name, "path": answer["path"], "endpoint": answer["endpoint"],
                     "relay": answer["relay"], "rtt_ms": answer["rtt_ms"]}
            replies.append(reply)
            if not args.json:
                via = answer["endpoint"] if answer["path"] == "direct" else f"relay {answer['relay']} at {answer['endpoint']}"
                print(f"pong from {name} via {via} in {answer['rtt_ms']:.2f} ms", flush=True)
        if seq < args.count:
            time.sleep(max(0.0, args.interval - (time.monotonic() - started_s)))
    if args.json:
        print_json(replies)
    if not replies:
        fail(f"no reply from {name} to {args.count} probe(s)")
    return 0


def cmd_netcheck(args: argparse.Namespace) -> int:
    """Without the daemon: ask the controllers and roots where they see us, and whether the NAT maps per destination."""
    from l2mesh.edge.node.netcheck import merged, run_netcheck, servers_from_specs, servers_from_state

    given = servers_from_specs(parse_root_list(args.controller, None), parse_root_list(args.root, os.environ.get(ROOTS_ENV)))
    servers = merged(given, servers_from_state(resolve_state_dir(args)))
    if not servers:
        fail("nothing to ask: join a network (its controller is asked), run the daemon with --root, "
             "or name servers with --controller ID@HOST:PORT / --root ID@HOST:PORT")
    report = run_netcheck(servers, args.timeout)
    if args.json:
        print_json(report)
    else:
        print_table(
            None,
            ["server", "role", "endpoint", "sees us at", "latency ms"],
            [[s["id"], s["role"], s["endpoint"], s["observed"] or s["error"],
              None if s["latency_ms"] is None else f"{s['latency_ms']:.2f}"] for s in report["servers"]],
        )
        verdict = {True: "symmetric (maps per destination)", False: "not symmetric", None: "unknown"}[report["symmetric"]]
        print(f"NAT: {verdict}: {report['reason']}")
    if not report["endpoints"]:
        fail("no server answered (is outgoing UDP blocked?)")
    return 0


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 60, got {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} out of range 1..65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="l2mesh", description="l2mesh node: a port on a self-hosted L2 overlay")
    parser.add_argument("--version", action="version", version=f"l2mesh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)

    p = sub.add_parser("id", help="print this node's id (creates the identity on first use)")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--json", action="store_true", help="print id and public keys as JSON")
    p.set_defaults(func=cmd_id)

    p = sub.add_parser("status", help="show the running daemon's id, port and counters")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--json", action="store_true", help="print as JSON (includes drop counters)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("join", help="join a network (returns at once; see `l2mesh networks`)")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("network_id", metavar="NETID", help="16 hex digits")
    p.add_argument(
        "--controller",
        metavar="HOST:PORT",
        help="the network's controller (UDP); without it, the daemon's roots find it by the id inside NETID",
    )
    p.add_argument("--allow-default", action="store_true",
                   help="install the network's default route (0.0.0.0/0, ::/0: through an exit node); l2mesh's own UDP stays on the underlay")
    p.add_argument("--no-managed-routes", action="store_true", help="install none of the network's other managed routes")
    p.add_argument("--exit-node", action="store_true",
                   help="forward for the network's members and masquerade what leaves through this host's other interfaces")
    p.add_argument("--subnet-router", action="store_true",
                   help="forward between the network and a LAN behind this host, addresses kept (no masquerade)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("leave", help="leave a network (its TAP device goes away)")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("network_id", metavar="NETID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_leave)

    p = sub.add_parser("networks", help="list joined networks: status, interface, MAC, IPs")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_networks)

    p = sub.add_parser("peers", help="list peers: path, endpoint, latency, bytes")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser("roots", help="list roots: status, latency, TCP fallback")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_roots)

    p = sub.add_parser("macs", help="the switch's MAC table: member MACs and MACs learned behind bridges")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_macs)

    p = sub.add_parser("rules", help="a network's flow rules and how many frames each matched on this member")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("network_id", metavar="NETID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("daemon", help="run the node service in the foreground (until SIGTERM/SIGINT)")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--port", type=port_number, default=DEFAULT_NODE_PORT, help="UDP port (default 9993)")
    p.add_argument(
        "--static-netconf",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="apply a network config from a JSON file instead of a controller (testing seam)",
    )
    p.add_argument(
        "--no-offload",
        action="store_true",
        help="read plain MTU-sized frames from the TAP (no TCP super-frames or partial checksums); for comparisons",
    )
    p.add_argument(
        "--root",
        action="append",
        metavar="ID@HOST:PORT",
        help=f"a root to register with and relay through (repeatable; HOST:PORT alone pins its keys on first use; "
        f"default: ${ROOTS_ENV}, comma-separated)",
    )
    p.add_argument(
        "--no-port-mapping",
        action="store_true",
        help="do not ask the default gateway (NAT-PMP, PCP) to forward the UDP port",
    )
    p.add_argument(
        "--metrics-listen",
        type=endpoint_arg,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (no token: bind it to loopback or a private address)",
    )
    p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("ping", help="probe a peer through the overlay session: path (direct or relay) and round trip per reply")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("node", metavar="NODE", help="a node id (10 hex digits) or a member's name")
    p.add_argument("--count", "-c", type=positive_int, default=10, metavar="N", help="probes to send (default 10)")
    p.add_argument("--interval", type=seconds, default=1.0, metavar="SECONDS", help="between probes (default 1)")
    p.add_argument("--timeout", type=seconds, default=5.0, metavar="SECONDS",
                   help="wait this long for each reply (default 5; the first may wait for a handshake)")
    p.add_argument("--json", action="store_true", help="the replies as one JSON list")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("netcheck", help="where the controllers and roots see this host's UDP, NAT kind, latency (no daemon needed)")
    add_state_dir_argument(p, NODE_STATE_DIR_DEFAULT)
    p.add_argument("--controller", action="append", metavar="ID@HOST:PORT",
                   help="a controller to ask (repeatable; default: the joined networks' controllers)")
    p.add_argument("--root", action="append", metavar="ID@HOST:PORT",
                   help=f"a root to ask (repeatable; HOST:PORT alone takes whatever keys answer; default: ${ROOTS_ENV} "
                   "and the roots the daemon pinned)")
    p.add_argument("--timeout", type=seconds, default=3.0, metavar="SECONDS", help="how long to wait for answers (default 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_netcheck)

    add_completion_command(sub, build_parser)
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    run_parser(build_parser(), argv)
