"""mDNS helper for demo.py, run inside one member's namespace with python-zeroconf.

It binds only to the member's overlay address, so every mDNS packet it sends
or hears crosses the l2mesh TAP device: if the service is found, multicast
went over the overlay, not over the underlay.

    register ADDRESS --instance NAME   announce a service, print REGISTERED, hold it until SIGTERM
    browse ADDRESS                     browse for the service type, resolve the first instance,
                                       print it as one JSON line (exit 1 if none within --timeout)

Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import socket
import sys
import threading
import time
from types import FrameType

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

SERVICE_TYPE = "_l2mesh-demo._tcp.local."
SERVICE_PORT = 8080


def open_zeroconf(address: str) -> Zeroconf:
    # One interface, IPv4 only: the overlay address is the only way in or out.
    return Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)


def register(address: str, instance: str, host: str) -> int:
    """Announce `instance` on `address` until SIGTERM/SIGINT, then say goodbye (unregister)."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    zc = open_zeroconf(address)
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{instance}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(address)],
        port=SERVICE_PORT,
        properties={"via": "l2mesh", "host": host},
        server=f"{host}.local.",
    )
    try:
        zc.register_service(info)  # probes and announces: returns once the name is ours
        print("REGISTERED", flush=True)
        while not stop.wait(0.5):  # a timed wait keeps the signal handler responsive
            pass
        zc.unregister_service(info)
    finally:
        zc.close()
    return 0


def browse(address: str, timeout_s: float) -> int:
    """Find the first instance of SERVICE_TYPE and resolve it; print {name, addresses, port, server, properties}."""
    deadline = time.monotonic() + timeout_s
    found: queue.Queue[str] = queue.Queue()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        # Runs on zeroconf's thread, which must not block: hand the name to the main thread.
        if state_change is ServiceStateChange.Added:
            found.put(name)

    zc = open_zeroconf(address)
    try:
        ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        try:
            name = found.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return fail(f"no {SERVICE_TYPE} service seen within {timeout_s:.0f} s")
        info = zc.get_service_info(SERVICE_TYPE, name, timeout=int(max(0.1, deadline - time.monotonic()) * 1000))
        if info is None or not info.parsed_addresses():
            return fail(f"found {name} but could not resolve it within {timeout_s:.0f} s")
        properties = {
            key.decode(errors="replace"): (value or b"").decode(errors="replace") for key, value in info.properties.items()
        }
        print(json.dumps({"name": name, "addresses": info.parsed_addresses(), "port": info.port,
                          "server": info.server, "properties": properties}), flush=True)
        return 0
    finally:
        zc.close()


def fail(message: str) -> int:
    print(f"mdns_helper: error: {message}", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("register")
    p.add_argument("address")
    p.add_argument("--instance", required=True)
    p.add_argument("--host", required=True, help="host name to announce (HOST.local.)")
    p = sub.add_parser("browse")
    p.add_argument("address")
    p.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    try:
        if args.command == "register":
            return register(args.address, args.instance, args.host)
        return browse(args.address, args.timeout)
    except KeyboardInterrupt:
        return fail("interrupted")
    except Exception as exc:  # zeroconf raises many kinds; the demo wants one line either way
        return fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
