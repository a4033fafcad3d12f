"""A home router that offers port mapping: Debian's miniupnpd (nftables backend) run by the lab, NAT-PMP on.

    start_stun_responder(lab)                  # once per lab, in the Internet router (stun.py says why)
    start_miniupnpd(lab, home_router)          # home_router from add_nat_host(..., port_mapping=True)

miniupnpd runs in the foreground (-d) with its own config and pid file in
the lab's work dir, started and stopped by PID like every lab process. Its
nftables chains are the ones add_nat_host(port_mapping=True) made; it only
adds and removes rules in them.
"""

from __future__ import annotations

import shutil
import sys

from l2mesh.lab.commands import wait_until
from l2mesh.lab.errors import LabError
from l2mesh.lab.namespaces import Lab
from l2mesh.lab.nat import NatRouter, table_prefix
from l2mesh.lab.processes import Proc
from l2mesh.lab.stun import STUN_PORT

MINIUPNPD = "/usr/sbin/miniupnpd"
STUN_LABEL = "stun"
# Printed by miniupnpd once its NAT-PMP socket listens (after its STUN check).
NATPMP_READY = "Listening for NAT-PMP"
STARTUP_TIMEOUT_S = 15.0

_CONFIG = """\
# miniupnpd for lab home router {namespace}: NAT-PMP (and PCP) only, no UPnP IGD.
ext_ifname=wan
listening_ip=lan
enable_natpmp=yes
enable_upnp=no
secure_mode=yes
# The WAN address is in 198.18.0.0/15, which miniupnpd counts as reserved;
# STUN against the lab's responder shows it is not behind another NAT.
ext_perform_stun=yes
ext_stun_host={stun_host}
ext_stun_port={stun_port}
upnp_table_name={table}_filter
upnp_nat_table_name={table}_filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 {lan_net} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


def miniupnpd_problem() -> str | None:
    """Why miniupnpd cannot run here (package missing), or None."""
    if shutil.which(MINIUPNPD) is None:
        return f"{MINIUPNPD} not found (Debian package miniupnpd-nftables; `make deps` installs it)"
    return None


def start_stun_responder(lab: Lab) -> Proc:
    """The lab's STUN responder on the Internet router, port 3478 of every address it has."""
    return lab.start(lab.require_router(), [sys.executable, "-m", "l2mesh.lab.stun", "--listen", f"0.0.0.0:{STUN_PORT}"],
                     STUN_LABEL)


def start_miniupnpd(lab: Lab, home_router: NatRouter) -> Proc:
    """miniupnpd in the home router's namespace, returned once it answers NAT-PMP (a STUN responder must run)."""
    if not home_router.port_mapping:
        raise LabError(f"{home_router.namespace} was not made with port_mapping=True: miniupnpd has no chains there")
    name = f"miniupnpd-hr{home_router.lan}"
    config = lab.work_dir / f"{name}.conf"
    config.write_text(_CONFIG.format(
        namespace=home_router.namespace, stun_host=home_router.upstream_ip, stun_port=STUN_PORT,
        table=table_prefix(lab), lan_net=home_router.lan_net,
    ))
    pid_file = lab.work_dir / f"{name}.pid"
    process = lab.start(home_router.namespace, [MINIUPNPD, "-d", "-f", str(config), "-P", str(pid_file)], name)

    def ready() -> bool:
        if process.poll() is not None:
            raise LabError(f"miniupnpd in {home_router.namespace} exited: {lab.log_of(name)}")
        return NATPMP_READY in lab.log_of(name, chars=100_000)

    wait_until(ready, STARTUP_TIMEOUT_S, interval_s=0.1, what=f"miniupnpd in {home_router.namespace}", error=LabError)
    return process
