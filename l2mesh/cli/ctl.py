"""`l2mesh-ctl`: run a controller (serve) and administer its networks and members over its admin API."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx

from l2mesh import __version__
from l2mesh.cli.completion import add_completion_command
from l2mesh.root_spec import ROOTS_ENV, parse_root_list
from l2mesh.cli.exits import say
from l2mesh.cli.common import (
    OneLineArgumentParser,
    add_state_dir_argument,
    endpoint_arg,
    positive_int,
    print_json,
    print_table,
    resolve_state_dir,
    run_parser,
)
from l2mesh.controller.defaults import API_FILE, DEFAULT_API, DEFAULT_LISTEN, DEFAULT_RELAY_LIMIT_MBPS, TOKEN_FILE
from l2mesh.dns_names import DnsNameError, normalize_domain
from l2mesh.errors import L2meshError
from l2mesh.ids import format_network_id, format_node_id, parse_network_id, parse_node_id
from l2mesh.managed_routes import RouteError, parse_route_spec
from l2mesh.ports import DEFAULT_ROOT_PORT
from l2mesh.rules.syntax import MAX_RULES_TEXT_BYTES, TAG_SYNTAX, RuleSyntaxError, is_valid_tag, parse_rules
from l2mesh.edge.statefile import read_json

CONTROLLER_STATE_DIR_DEFAULT = "/var/lib/l2mesh-ctl"
ROOT_STATE_DIR_DEFAULT = "/var/lib/l2mesh-root"
API_ENV = "L2MESH_API"
TOKEN_ENV = "L2MESH_API_TOKEN"
HTTP_TIMEOUT_S = 10.0


class ApiClient:
    def __init__(self, args: argparse.Namespace) -> None:
        state_dir = resolve_state_dir(args)
        url = args.api or os.environ.get(API_ENV)
        token = os.environ.get(TOKEN_ENV)
        if url is None:
            api_file = state_dir / API_FILE
            url = read_json(api_file)["url"] if api_file.exists() else f"http://{DEFAULT_API[0]}:{DEFAULT_API[1]}"
        if token is None:
            token_file = state_dir / TOKEN_FILE
            try:
                token = token_file.read_text().strip()
            except FileNotFoundError:
                raise L2meshError(
                    f"no API token in {state_dir} (is `l2mesh-ctl serve` running with this --state-dir? or set {TOKEN_ENV})"
                ) from None
            except PermissionError:
                raise L2meshError(f"permission denied reading {token_file}: run as root") from None
        self.root = url.rstrip("/")  # where the web admin's pages are too
        self.base = self.root + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            # Certificates are only loaded for https (building that context costs ~50 ms per call).
            with httpx.Client(verify=self.base.startswith("https"), timeout=HTTP_TIMEOUT_S) as client:
                response = client.request(method, self.base + path, json=body, headers=self.headers)
        except httpx.ConnectError:
            raise L2meshError(f"the controller API at {self.base} is not reachable (is `l2mesh-ctl serve` running?)") from None
        except httpx.HTTPError as exc:
            raise L2meshError(f"controller API request failed: {exc}") from None
        if response.status_code == 204:
            return None
        try:
            doc = response.json()
        except ValueError:
            raise L2meshError(f"the controller API answered {response.status_code} without JSON") from None
        if response.status_code >= 400:
            raise L2meshError(str(doc.get("error", f"HTTP {response.status_code}")) if isinstance(doc, dict) else f"HTTP {response.status_code}")
        return doc


def network_arg(text: str) -> str:
    try:
        return format_network_id(parse_network_id(text))
    except L2meshError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def node_arg(text: str) -> str:
    try:
        return format_node_id(parse_node_id(text))
    except L2meshError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tag_arg(text: str) -> str:
    if not is_valid_tag(text):
        raise argparse.ArgumentTypeError(f"invalid tag {text!r}: {TAG_SYNTAX}")
    return text


def route_arg(text: str) -> str:
    """CIDR[@VIA], checked here so that a typo is named before anything is sent (the controller checks the rest)."""
    try:
        return parse_route_spec(text).spec()
    except RouteError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def domain_arg(text: str) -> str:
    try:
        return normalize_domain(text)
    except DnsNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ago(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    seconds = max(0.0, time.time() - timestamp)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


# -- commands -----------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: the server stack (hypercorn, starlette, trio) would slow every admin command.
    from l2mesh.edge.controller.server import ServeOptions, run_controller

    roots = parse_root_list(args.root, os.environ.get(ROOTS_ENV))
    options = ServeOptions(resolve_state_dir(args), args.listen, args.api_listen, args.relay_limit_mbps, roots, db_url=args.db)
    options.identity_file = args.identity
    options.tls_cert, options.tls_key, options.behind_proxy = args.tls_cert, args.tls_key, args.behind_proxy
    return run_controller(options)


def cmd_root(args: argparse.Namespace) -> int:
    state_dir = resolve_state_dir(args)
    if args.show_id:
        # Only the identity file: an operator writing `--root ID@HOST:PORT` needs no running root.
        from l2mesh.edge.identity_file import load_or_create_identity

        identity = load_or_create_identity(state_dir)
        if args.json:
            print_json(identity.public.to_json())
        else:
            print(format_node_id(identity.node_id))
        return 0
    from l2mesh.edge.root.server import RootOptions, run_root

    return run_root(RootOptions(state_dir, args.listen, args.tcp_listen, args.relay_limit_mbps))


def cmd_status(args: argparse.Namespace) -> int:
    status = ApiClient(args).request("GET", "/status")
    if args.json:
        print_json(status)
    else:
        print_table(None, ["controller", "online members", "sessions"], [[status["id"], status["online_members"], status["sessions"]]])
    return 0


def _network_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if getattr(args, "name", None) is not None:
        fields["name"] = args.name
    if args.pool is not None:
        fields["pools"] = args.pool
    if args.route is not None:
        # Create sets the list; update adds to it (and --no-route takes away) on the controller, in one transaction.
        fields["routes" if args.command_kind == "create" else "add_routes"] = args.route
    if getattr(args, "no_route", None) is not None:
        fields["remove_routes"] = args.no_route
    if args.dns_domain is not None:
        fields["dns_domain"] = args.dns_domain
    if args.mtu is not None:
        fields["mtu"] = args.mtu
    if args.multicast_limit is not None:
        fields["multicast_limit"] = args.multicast_limit
    if args.broadcast is not None:
        fields["broadcast"] = args.broadcast
    if args.private is not None:
        fields["private"] = args.private
    return fields


def _print_network(network: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(network)
        return
    print_table(
        None,
        ["network", "name", "pools", "routes", "DNS domain", "MTU", "broadcast", "private", "revision"],
        [[network["id"], network["name"], ", ".join(network["pools"]) or None, route_texts(network.get("routes", [])),
          network.get("dns_domain"), network["mtu"], "on" if network["broadcast"] else "off",
          "yes" if network["private"] else "no", network["revision"]]],
    )


def route_texts(routes: list[dict[str, Any]]) -> str | None:
    """Routes for a table cell: `198.19.200.0/24 via 10.147.17.3`, `10.147.17.0/24` (on-link)."""
    return ", ".join(r["target"] if r.get("via") is None else f"{r['target']} via {r['via']}" for r in routes) or None


def cmd_network_create(args: argparse.Namespace) -> int:
    fields = _network_fields(args)
    fields["name"] = args.name
    network = ApiClient(args).request("POST", "/networks", fields)
    if args.json:
        print_json(network)
    else:
        print(network["id"])
    return 0


def cmd_network_list(args: argparse.Namespace) -> int:
    networks = ApiClient(args).request("GET", "/networks")
    if args.json:
        print_json(networks)
        return 0
    print_table(
        None,
        ["network", "name", "pools", "routes", "members", "authorized", "MTU", "revision"],
        [[n["id"], n["name"], ", ".join(n["pools"]) or None, route_texts(n.get("routes", [])), n["members"], n["authorized"],
          n["mtu"], n["revision"]] for n in networks],
    )
    return 0


def cmd_network_show(args: argparse.Namespace) -> int:
    _print_network(ApiClient(args).request("GET", f"/networks/{args.network_id}"), args.json)
    return 0


def cmd_network_update(args: argparse.Namespace) -> int:
    fields = _network_fields(args)
    if not fields:
        raise L2meshError("nothing to change: give at least one option (see l2mesh-ctl network update --help)")
    _print_network(ApiClient(args).request("PATCH", f"/networks/{args.network_id}", fields), args.json)
    return 0


def read_rules_file(path: str) -> str:
    """The rules in path ('-': stdin), checked here first so a bad line is named before anything is sent."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_RULES_TEXT_BYTES + 1)
        else:
            with Path(path).open(encoding="utf-8") as file:
                text = file.read(MAX_RULES_TEXT_BYTES + 1)
    except FileNotFoundError:
        raise L2meshError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise L2meshError(f"{path}: cannot read rules: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        parse_rules(text)
    except RuleSyntaxError as exc:
        raise L2meshError(f"{path}: {exc}") from None
    return text


def cmd_network_rules(args: argparse.Namespace) -> int:
    text = read_rules_file(args.file) if args.file is not None else None
    api = ApiClient(args)
    if text is not None:
        doc = api.request("PUT", f"/networks/{args.network_id}/rules", {"rules": text})
        if not args.json:
            count = len(doc["rules"])
            print(f"{count} rule{'s' if count != 1 else ''} set on {doc['id']} (revision {doc['revision']}; pushed to online members)")
            return 0
    else:
        doc = api.request("GET", f"/networks/{args.network_id}/rules")
    if args.json:
        print_json(doc)
    elif doc["text"]:
        sys.stdout.write(doc["text"] if doc["text"].endswith("\n") else doc["text"] + "\n")
    else:
        print(f"network {doc['id']}: no flow rules (every frame is accepted)")
    return 0


def cmd_network_delete(args: argparse.Namespace) -> int:
    ApiClient(args).request("DELETE", f"/networks/{args.network_id}")
    print(f"deleted {args.network_id}")
    return 0


def _print_members(members: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(members)
        return
    print_table(
        None,
        ["member", "name", "authorized", "bridge", "IPs", "tags", "online", "last seen", "endpoint"],
        [[m["id"], m["name"] or None, "yes" if m["authorized"] else "no", "yes" if m["bridge"] else "no",
          ", ".join(m["ips"]) or None, ", ".join(m.get("tags", [])) or None, "yes" if m.get("online") else "no",
          _ago(m["last_seen"]), m["endpoint"]]
         for m in members],
    )


def cmd_member_list(args: argparse.Namespace) -> int:
    _print_members(ApiClient(args).request("GET", f"/networks/{args.network_id}/members"), args.json)
    return 0


def cmd_member_show(args: argparse.Namespace) -> int:
    _print_members([ApiClient(args).request("GET", f"/networks/{args.network_id}/members/{args.node_id}")], args.json)
    return 0


def _member_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.ip is not None:
        fields["ips"] = args.ip
    if args.bridge is not None:
        fields["bridge"] = args.bridge
    if args.name is not None:
        fields["name"] = args.name
    if args.tag is not None:
        fields["tags"] = args.tag
    return fields


def cmd_member_authorize(args: argparse.Namespace) -> int:
    fields = _member_fields(args)
    fields["authorized"] = True
    member = ApiClient(args).request("PATCH", f"/networks/{args.network_id}/members/{args.node_id}", fields)
    _print_members([member], args.json)
    return 0


def cmd_member_deauthorize(args: argparse.Namespace) -> int:
    member = ApiClient(args).request("PATCH", f"/networks/{args.network_id}/members/{args.node_id}", {"authorized": False})
    _print_members([member], args.json)
    return 0


def cmd_member_set(args: argparse.Namespace) -> int:
    fields = _member_fields(args)
    if not fields:
        raise L2meshError("nothing to change: give --ip, --bridge/--no-bridge, --name or --tag")
    member = ApiClient(args).request("PATCH", f"/networks/{args.network_id}/members/{args.node_id}", fields)
    _print_members([member], args.json)
    return 0


def cmd_member_tag(args: argparse.Namespace) -> int:
    member = ApiClient(args).request("PATCH", f"/networks/{args.network_id}/members/{args.node_id}", {"tags": args.tags})
    _print_members([member], args.json)
    return 0


def cmd_member_delete(args: argparse.Namespace) -> int:
    ApiClient(args).request("DELETE", f"/networks/{args.network_id}/members/{args.node_id}")
    print(f"deleted {args.node_id} from {args.network_id}")
    return 0


# -- the web admin (issue 15) ----------------------------------------------------------------------------
def cmd_web(args: argparse.Namespace) -> int:
    api = ApiClient(args)
    link = api.request("POST", "/web/login-links")
    url = (args.base_url or api.root).rstrip("/") + link["path"]
    if args.json:
        print_json({"url": url, "expires_in_s": link["expires_in_s"]})
    else:
        print(url)
        say(f"a one-time login link: it works once, within {link['expires_in_s'] / 60:.0f} minutes")
    return 0


def read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        if not sys.stdin.isatty():
            raise L2meshError("no terminal to ask the password on: use --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise L2meshError("the passwords differ")
    if not password:
        raise L2meshError("empty password")
    return password


def cmd_admin_add(args: argparse.Namespace) -> int:
    password = read_new_password(args.password_stdin)
    doc = ApiClient(args).request("PUT", f"/web/admins/{args.name}", {"password": password})
    if args.json:
        print_json(doc)
    else:
        print(f"admin {doc['name']}: {'added' if doc['created'] else 'password changed'}")
    return 0


def cmd_admin_list(args: argparse.Namespace) -> int:
    admins = ApiClient(args).request("GET", "/web/admins")
    if args.json:
        print_json(admins)
    else:
        print_table(None, ["admin", "added"], [[a["name"], _ago(a["created"])] for a in admins])
    return 0


def cmd_admin_remove(args: argparse.Namespace) -> int:
    ApiClient(args).request("DELETE", f"/web/admins/{args.name}")
    print(f"removed admin {args.name} (and ended their sessions)")
    return 0


def add_web_parsers(sub: Any) -> None:
    p = sub.add_parser("web", help="print a one-time login link to the web admin")
    _common(p)
    p.add_argument("--base-url", metavar="URL", help="the address browsers open, e.g. a reverse proxy's https://NAME (default: the API's)")
    p.set_defaults(func=cmd_web)
    admin = sub.add_parser("admin", help="named web admins who log in with a password").add_subparsers(
        dest="admin_command", required=True, parser_class=OneLineArgumentParser
    )
    p = admin.add_parser("add", help="add an admin, or set an existing admin's password (asked for on the terminal)")
    _common(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    p.set_defaults(func=cmd_admin_add)
    p = admin.add_parser("list", help="list admins")
    _common(p)
    p.set_defaults(func=cmd_admin_list)
    p = admin.add_parser("remove", help="remove an admin (their sessions end)")
    _common(p, json_output=False)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_admin_remove)


# -- parser -----------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, json_output: bool = True) -> None:
    add_state_dir_argument(p, CONTROLLER_STATE_DIR_DEFAULT)
    p.add_argument("--api", default=None, metavar="URL", help=f"admin API URL (default: from the state dir, or ${API_ENV})")
    if json_output:
        p.add_argument("--json", action="store_true", help="print JSON")


def _network_options(p: argparse.ArgumentParser, update: bool) -> None:
    p.add_argument("--pool", action="append", metavar="CIDR", help="IPv4/IPv6 pool for automatic addresses (repeatable)")
    p.add_argument(
        "--route", action="append", type=route_arg, metavar="CIDR[@VIA]",
        help="managed route, on-link or via a member's overlay address (repeatable; "
        + ("adds to the network's routes)" if update else "the network's routes)"),
    )
    if update:
        p.add_argument("--no-route", action="append", type=route_arg, metavar="CIDR", help="remove the route to CIDR (repeatable)")
    p.add_argument("--dns-domain", type=domain_arg, metavar="DOMAIN", help="the domain members answer DNS for (default: <name>.l2mesh)")
    p.add_argument("--mtu", type=positive_int, help="virtual MTU in bytes (default 2800)")
    p.add_argument("--multicast-limit", type=positive_int, help="bound plain broadcast fan-out (default: unlimited)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--broadcast", dest="broadcast", action="store_const", const=True, default=None, help="allow broadcast (default)")
    g.add_argument("--no-broadcast", dest="broadcast", action="store_const", const=False, help="block broadcast")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--private", dest="private", action="store_const", const=True, default=None, help="members need authorization (default)")
    g.add_argument("--public", dest="private", action="store_const", const=False, help="anyone who asks is a member")


def _member_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ip", action="append", metavar="IP", help="managed address, IP or IP/prefix (repeatable; replaces the list)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bridge", dest="bridge", action="store_const", const=True, default=None, help="may carry other MACs (a LAN bridge)")
    g.add_argument("--no-bridge", dest="bridge", action="store_const", const=False, help="only its own MAC")
    p.add_argument("--name", help="a name for people, and its DNS name: <name>.<network domain> (lower case, other characters as -)")
    p.add_argument("--tag", action="append", type=tag_arg, metavar="TAG", help="a tag for flow rules (repeatable; replaces the list)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="l2mesh-ctl", description="l2mesh network controller")
    parser.add_argument("--version", action="version", version=f"l2mesh-ctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)

    p = sub.add_parser("serve", help="run the controller in the foreground (until SIGTERM/SIGINT)")
    add_state_dir_argument(p, CONTROLLER_STATE_DIR_DEFAULT)
    p.add_argument("--listen", type=endpoint_arg, default=DEFAULT_LISTEN, metavar="ADDR:PORT", help="UDP for nodes (default 0.0.0.0:9994)")
    p.add_argument("--api", dest="api_listen", type=endpoint_arg, default=DEFAULT_API, metavar="ADDR:PORT", help="admin API (default 127.0.0.1:9995)")
    p.add_argument(
        "--relay-limit-mbps", type=positive_int, default=DEFAULT_RELAY_LIMIT_MBPS, metavar="MBIT/S",
        help=f"most one member may send through this controller's relay (default {DEFAULT_RELAY_LIMIT_MBPS})",
    )
    p.add_argument(
        "--root", action="append", metavar="ID@HOST:PORT",
        help=f"a root to register with, so members find this controller by network id alone (repeatable; "
        f"HOST:PORT alone pins its keys on first use; default: ${ROOTS_ENV})",
    )
    p.add_argument(
        "--db", metavar="URL",
        help="database: sqlite:///PATH or postgresql://... (a libpq URL; several instances may share it); default: controller.db in the state dir",
    )
    p.add_argument(
        "--identity", type=Path, metavar="FILE",
        help="the controller identity file (as identity.json in a state directory): several instances share one",
    )
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve the admin API and web admin over HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument(
        "--behind-proxy", action="store_true",
        help="--api may be a non-loopback address without --tls-cert: a reverse proxy in front serves HTTPS (README: Web admin)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("root", help="run a root (rendezvous and relay for any node) in the foreground, or --show-id")
    add_state_dir_argument(p, ROOT_STATE_DIR_DEFAULT)
    p.add_argument("--listen", type=endpoint_arg, default=("0.0.0.0", DEFAULT_ROOT_PORT), metavar="ADDR:PORT",
                   help=f"UDP for nodes (default 0.0.0.0:{DEFAULT_ROOT_PORT})")
    p.add_argument("--tcp-listen", type=endpoint_arg, default=None, metavar="ADDR:PORT",
                   help="TCP fallback for nodes whose UDP is blocked (HTTP upgrade; default: none; members try the UDP port number)")
    p.add_argument(
        "--relay-limit-mbps", type=positive_int, default=DEFAULT_RELAY_LIMIT_MBPS, metavar="MBIT/S",
        help=f"most one node may send through this root's relay (default {DEFAULT_RELAY_LIMIT_MBPS})",
    )
    p.add_argument("--show-id", action="store_true", help="print the root's id (creating its identity if absent) and exit")
    p.add_argument("--json", action="store_true", help="with --show-id: the id and public keys as JSON")
    p.set_defaults(func=cmd_root)

    p = sub.add_parser("status", help="controller id and online members")
    _common(p)
    p.set_defaults(func=cmd_status)

    network = sub.add_parser("network", help="create, list, show, update, delete networks").add_subparsers(
        dest="network_command", required=True, parser_class=OneLineArgumentParser
    )
    p = network.add_parser("create", help="create a network; prints its id")
    _common(p)
    p.add_argument("name")
    _network_options(p, update=False)
    p.set_defaults(func=cmd_network_create, command_kind="create")
    p = network.add_parser("list", help="list networks")
    _common(p)
    p.set_defaults(func=cmd_network_list)
    p = network.add_parser("show", help="show one network")
    _common(p)
    p.add_argument("network_id", type=network_arg, metavar="NETID")
    p.set_defaults(func=cmd_network_show)
    p = network.add_parser("update", help="change a network's settings (pushed to members at once)")
    _common(p)
    p.add_argument("network_id", type=network_arg, metavar="NETID")
    p.add_argument("--name")
    _network_options(p, update=True)
    p.set_defaults(func=cmd_network_update, command_kind="update")
    p = network.add_parser("rules", help="set a network's flow rules from a file (pushed at once), or show them")
    _common(p)
    p.add_argument("network_id", type=network_arg, metavar="NETID")
    p.add_argument("--file", metavar="FILE", help="rules to set, one per line ('-': standard input); without it, show the rules")
    p.set_defaults(func=cmd_network_rules)
    p = network.add_parser("delete", help="delete a network and its members")
    _common(p, json_output=False)
    p.add_argument("network_id", type=network_arg, metavar="NETID")
    p.set_defaults(func=cmd_network_delete)

    member = sub.add_parser("member", help="list, authorize, deauthorize, set, delete members").add_subparsers(
        dest="member_command", required=True, parser_class=OneLineArgumentParser
    )
    for name, func, help_text, extra in (
        ("list", cmd_member_list, "list a network's members", None),
        ("show", cmd_member_show, "show one member", "node"),
        ("authorize", cmd_member_authorize, "authorize a member (before or after it asks)", "node+opts"),
        ("deauthorize", cmd_member_deauthorize, "cut a member off (every peer drops it within a second)", "node"),
        ("set", cmd_member_set, "change a member's IPs, bridge flag or name", "node+opts"),
        ("tag", cmd_member_tag, "replace a member's tags (none: no tags)", "node+tags"),
        ("delete", cmd_member_delete, "forget a member", "node"),
    ):
        p = member.add_parser(name, help=help_text)
        _common(p, json_output=name != "delete")
        p.add_argument("network_id", type=network_arg, metavar="NETID")
        if extra:
            p.add_argument("node_id", type=node_arg, metavar="NODEID")
        if extra == "node+opts":
            _member_options(p)
        if extra == "node+tags":
            p.add_argument("tags", nargs="*", type=tag_arg, metavar="TAG")
        p.set_defaults(func=func)
    add_web_parsers(sub)

    add_completion_command(sub, build_parser)
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    run_parser(build_parser(), argv)
