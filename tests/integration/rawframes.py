"""Raw Ethernet frames on an interface, for tests that run it inside a namespace they made (AF_PACKET, root).

    python3 rawframes.py send IFACE DST_MAC ETHERTYPE TEXT     one frame from IFACE's own MAC
    python3 rawframes.py receive IFACE ETHERTYPE SECONDS       prints each TEXT received, one per line, until SECONDS pass

ETHERTYPE is hex (0x88b5). Frames are padded to Ethernet's 60-byte minimum.
"""

from __future__ import annotations

import socket
import sys
import time


def send(interface: str, dst_mac: str, ethertype: int, text: str) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((interface, 0))
        src = sock.getsockname()[4][:6]
        frame = bytes.fromhex(dst_mac.replace(":", "")) + src + ethertype.to_bytes(2, "big") + text.encode()
        sock.send(frame.ljust(60, b"\0"))


def receive(interface: str, ethertype: int, seconds: float) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype)) as sock:
        sock.bind((interface, ethertype))
        print("listening", flush=True)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame = sock.recv(65536)
            except TimeoutError:
                break
            print(frame[14:].rstrip(b"\0").decode(errors="replace"), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "send":
        send(argv[1], argv[2], int(argv[3], 16), argv[4])
        return 0
    if len(argv) == 4 and argv[0] == "receive":
        receive(argv[1], int(argv[2], 16), float(argv[3]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
