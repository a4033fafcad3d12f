"""soak.py's multicast member, run inside a member's namespace: join a group on the overlay and hold it, or send to it.

    soak_multicast.py listen GROUP IFADDR    join GROUP on the interface holding IFADDR (the kernel sends
                                             an IGMP report over the overlay) until SIGTERM, then leave
                                             (an IGMP leave); prints how many datagrams arrived
    soak_multicast.py send GROUP IFADDR N    N datagrams to GROUP:PORT out of that interface, 20 ms apart
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from types import FrameType

PORT = 15147
SEND_GAP_S = 0.02


class Stop(Exception):
    """SIGTERM: leave the group and report."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def listen(group: str, ifaddr: str) -> int:
    signal.signal(signal.SIGTERM, _stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((group, PORT))
    membership = socket.inet_aton(group) + socket.inet_aton(ifaddr)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    received = 0
    try:
        while True:
            sock.recv(2048)
            received += 1
    except Stop:
        pass
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, membership)
    print(f"received {received}", flush=True)
    return 0


def send(group: str, ifaddr: str, count: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    for number in range(count):
        sock.sendto(f"soak {number}".encode(), (group, PORT))
        time.sleep(SEND_GAP_S)
    return 0


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 3 and argv[0] == "listen":
            return listen(argv[1], argv[2])
        if len(argv) == 4 and argv[0] == "send":
            return send(argv[1], argv[2], int(argv[3]))
    except (OSError, ValueError) as exc:
        print(f"soak_multicast.py: error: {exc}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
