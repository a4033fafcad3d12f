"""l2mesh.node.route_plan and l2mesh.managed_routes: which managed routes a member installs, and route texts."""

from __future__ import annotations

import pytest

from l2mesh.identity import Identity
from l2mesh.ids import make_network_id
from l2mesh.managed_routes import ManagedRoute, RouteError, parse_route_spec, route_from_json
from l2mesh.netconf import MemberConfig, NetworkConfig
from l2mesh.node.join_options import JoinOptions
from l2mesh.node.route_plan import NO_ROUTES, UnderlayRoute, plan_routes

ME, EXIT, ROUTER = (Identity.generate().public for _ in range(3))
NET = make_network_id(0x0A1B2C3D4E, 1)
POOL_ROUTE = ManagedRoute("10.147.17.0/24")
LAN_ROUTE = ManagedRoute("198.19.200.0/24", "10.147.17.3")
DEFAULT_ROUTE = ManagedRoute("0.0.0.0/0", "10.147.17.2")
# As a member host of the lab has it: its own /24 on eth0, the rest of the underlay through its gateway.
UNDERLAY = (UnderlayRoute("198.18.1.0/24", None, "eth0"), UnderlayRoute("198.18.0.0/15", "198.18.1.1", "eth0"))


def config(*routes: ManagedRoute) -> NetworkConfig:
    members = (
        MemberConfig(ME.node_id, ME, ips=("10.147.17.1/24",), endpoints=(("198.18.1.2", 9993),)),
        MemberConfig(EXIT.node_id, EXIT, ips=("10.147.17.2/24",), endpoints=(("198.18.2.2", 9993),)),
        MemberConfig(ROUTER.node_id, ROUTER, ips=("10.147.17.3/24",), endpoints=(("198.18.3.2", 9993),)),
    )
    return NetworkConfig(NET, revision=1, issued_to=ME.node_id, name="lab", members=members, routes=routes)


def test_route_texts_parse_to_normalized_routes_and_back() -> None:
    assert parse_route_spec("198.19.200.7/24@10.147.17.3") == LAN_ROUTE
    assert parse_route_spec(" 10.147.17.0/24 ") == POOL_ROUTE
    assert parse_route_spec("::/0@fd00::2") == ManagedRoute("::/0", "fd00::2")
    assert LAN_ROUTE.spec() == "198.19.200.0/24@10.147.17.3" and str(LAN_ROUTE) == "198.19.200.0/24 via 10.147.17.3"
    assert route_from_json(LAN_ROUTE.to_json()) == LAN_ROUTE
    assert DEFAULT_ROUTE.is_default and not LAN_ROUTE.is_default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("198.19.200.0/33", "invalid route '198.19.200.0/33'"),
        ("lan@10.147.17.3", "invalid route 'lan'"),
        ("198.19.200.0/24@gw", "invalid route gateway 'gw'"),
        ("198.19.200.0/24@fd00::2", "is IPv4 but its gateway fd00::2 is IPv6"),
        ("198.19.200.0/24@224.0.0.1", "cannot be a route's gateway"),
    ],
)
def test_bad_route_texts_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(RouteError, match=message.replace("(", r"\(").replace(")", r"\)")) as excinfo:
        parse_route_spec(text)
    assert "\n" not in str(excinfo.value)


def test_a_member_installs_routes_via_others_and_counts_its_own_subnet_as_present() -> None:
    plan = plan_routes(config(POOL_ROUTE, LAN_ROUTE), ME.node_id, JoinOptions(), UNDERLAY, ["198.18.2.2", "198.18.3.2"])
    assert plan.install == (LAN_ROUTE,)
    assert plan.present == (POOL_ROUTE,)
    assert plan.in_force == (POOL_ROUTE, LAN_ROUTE)
    assert plan.refused == () and plan.skipped == ()


def test_the_gateway_itself_does_not_install_its_own_route() -> None:
    plan = plan_routes(config(LAN_ROUTE).with_changes(issued_to=ROUTER.node_id), ROUTER.node_id, JoinOptions(), UNDERLAY)
    assert plan.install == () and plan.skipped == ((LAN_ROUTE, "this member is its gateway"),)


def test_a_default_route_needs_allow_default_and_other_routes_can_be_declined() -> None:
    routes = config(DEFAULT_ROUTE, LAN_ROUTE)
    plain = plan_routes(routes, ME.node_id, JoinOptions(), UNDERLAY)
    assert plain.install == (LAN_ROUTE,)
    assert [r for r, _ in plain.skipped] == [DEFAULT_ROUTE] and "--allow-default" in plain.skipped[0][1]
    both = plan_routes(routes, ME.node_id, JoinOptions(allow_default=True), UNDERLAY)
    assert both.install == (DEFAULT_ROUTE, LAN_ROUTE)
    default_only = plan_routes(routes, ME.node_id, JoinOptions(allow_default=True, managed_routes=False), UNDERLAY)
    assert default_only.install == (DEFAULT_ROUTE,) and "--no-managed-routes" in default_only.skipped[0][1]


def test_a_default_route_is_installed_even_though_the_underlay_lives_inside_it() -> None:
    """The policy table keeps the daemon's UDP on the underlay, so no address inside 0/0 refuses it."""
    underlay = (*UNDERLAY, UnderlayRoute("0.0.0.0/0", "198.18.1.1", "eth0"))
    plan = plan_routes(config(DEFAULT_ROUTE), ME.node_id, JoinOptions(allow_default=True), underlay, ["198.18.2.2"])
    assert plan.install == (DEFAULT_ROUTE,)


@pytest.mark.parametrize(
    ("route", "why"),
    [
        (ManagedRoute("198.18.0.0/15", "10.147.17.3"), "the same destination as the underlay route 198.18.0.0/15 via 198.18.1.1 dev eth0"),
        (ManagedRoute("198.18.1.128/25", "10.147.17.3"), "inside the directly connected underlay subnet 198.18.1.0/24 dev eth0"),
        (ManagedRoute("198.18.0.0/16", "10.147.17.3"), "holds the underlay gateway 198.18.1.1"),
        (ManagedRoute("198.18.3.0/24", "10.147.17.3"), "holds 198.18.3.2, where this member's l2mesh traffic goes"),
    ],
)
def test_a_route_that_would_override_the_underlay_is_refused_with_the_reason(route: ManagedRoute, why: str) -> None:
    plan = plan_routes(config(route), ME.node_id, JoinOptions(), UNDERLAY, ["198.18.2.2", "198.18.3.2"])
    assert plan.install == ()
    assert [r for r, _ in plan.refused] == [route]
    assert why in plan.refused[0][1] and "would override the underlay" in plan.refused[0][1]


def test_a_wider_route_leaves_a_connected_subnet_alone_and_other_families_never_clash() -> None:
    # 198.19.4.0/22 holds the connected 198.19.5.0/24 of a second port: by longest prefix that one stays in force.
    underlay = (*UNDERLAY, UnderlayRoute("198.19.5.0/24", None, "eth1"))
    wider = ManagedRoute("198.19.4.0/22", "10.147.17.3")
    assert plan_routes(config(wider), ME.node_id, JoinOptions(), underlay).install == (wider,)
    lan_v6 = ManagedRoute("fd00:200::/64")
    assert plan_routes(config(lan_v6), ME.node_id, JoinOptions(), UNDERLAY).install == (lan_v6,)


def test_a_gateway_off_the_members_subnets_cannot_be_reached() -> None:
    far = ManagedRoute("198.19.200.0/24", "10.147.99.3")
    plan = plan_routes(config(far), ME.node_id, JoinOptions(), UNDERLAY)
    assert plan.install == () and "not on this member's overlay subnets" in plan.refused[0][1]


def test_no_config_or_not_listed_means_no_routes() -> None:
    assert plan_routes(None, ME.node_id, JoinOptions()) == NO_ROUTES
    assert plan_routes(config(LAN_ROUTE), 0x0102030405, JoinOptions()) == NO_ROUTES


def test_join_options_read_back_and_older_files_get_defaults() -> None:
    options = JoinOptions(allow_default=True, managed_routes=False, exit_node=True)
    assert JoinOptions.from_json(options.to_json()) == options
    assert JoinOptions.from_json(None) == JoinOptions() == JoinOptions.from_json({})
    assert options.roles == ("exit node",) and options.forwards
    assert not JoinOptions().forwards
