"""The least a Python TAP <-> UDP forwarder can do per frame: the floor under any Python overlay's latency.

Run by benchmarks/python_floor.py in each host namespace of net.py's
topology: one TAP, one UDP socket, one peer, a blocking epoll loop on the
main thread. A frame read from the TAP is sealed (a counter as the nonce,
sent in front of the ciphertext) and sent to the peer; a datagram is opened
and written to the TAP. Nothing else: no switch, no sessions, no replay
window, no handshake (both ends get the key on the command line), nothing
counted. A frame that does not open is dropped.

Not an overlay anyone should run: it exists to measure how much of
l2mesh's added RTT any Python forwarder pays on a machine (issue 17).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import subprocess
from collections.abc import Callable

from pytun import IFF_NO_PI, IFF_TAP, TunTapDevice

MAX_FRAME_BYTES = 2048
KEY_BYTES = 32
_COUNTER = struct.Struct("<Q")
CIPHERS = ("none", "libsodium", "openssl")

Sealer = Callable[[int, bytes], bytes]
Opener = Callable[[bytes], bytes | None]


def ciphers(name: str, key: bytes) -> tuple[Sealer, Opener]:
    """seal(counter, frame) -> datagram and open(datagram) -> frame or None, for one cipher."""
    if name == "none":
        return (lambda counter, frame: _COUNTER.pack(counter) + frame), (lambda datagram: datagram[_COUNTER.size:])
    if name == "libsodium":
        from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt as decrypt
        from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt as encrypt
        from nacl.exceptions import CryptoError as invalid

        def seal(counter: int, frame: bytes) -> bytes:
            header = _COUNTER.pack(counter)
            return header + encrypt(frame, None, bytes(4) + header, key)

        def open_(datagram: bytes) -> bytes | None:
            try:
                return decrypt(datagram[_COUNTER.size:], None, bytes(4) + datagram[:_COUNTER.size], key)
            except invalid:
                return None

        return seal, open_
    if name == "openssl":
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        aead = ChaCha20Poly1305(key)

        def seal_openssl(counter: int, frame: bytes) -> bytes:
            header = _COUNTER.pack(counter)
            return header + aead.encrypt(bytes(4) + header, frame, None)

        def open_openssl(datagram: bytes) -> bytes | None:
            try:
                return aead.decrypt(bytes(4) + datagram[:_COUNTER.size], datagram[_COUNTER.size:], None)
            except InvalidTag:
                return None

        return seal_openssl, open_openssl
    raise ValueError(f"unknown cipher {name!r}")


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def forward(tap_fd: int, sock: socket.socket, peer: tuple[str, int], seal: Sealer, open_: Opener) -> None:
    """Forever: TAP frames to the peer, the peer's datagrams to the TAP."""
    poll = select.epoll()
    poll.register(tap_fd, select.EPOLLIN)
    poll.register(sock.fileno(), select.EPOLLIN)
    sock_fd = sock.fileno()
    read, write, sendto, recv = os.read, os.write, sock.sendto, sock.recv
    counter = 0
    while True:
        for fd, _ in poll.poll():
            if fd == tap_fd:
                while True:
                    try:
                        frame = read(tap_fd, MAX_FRAME_BYTES)
                    except BlockingIOError:
                        break
                    counter += 1
                    sendto(seal(counter, frame), peer)
            elif fd == sock_fd:
                while True:
                    try:
                        datagram = recv(MAX_FRAME_BYTES + 64)
                    except BlockingIOError:
                        break
                    opened = open_(datagram)
                    if opened is not None:
                        write(tap_fd, opened)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tap", required=True, help="TAP device name")
    parser.add_argument("--address", required=True, help="the TAP's address, ADDR/PREFIX")
    parser.add_argument("--mtu", type=int, default=1400)
    parser.add_argument("--listen", required=True, type=endpoint, help="HOST:PORT to receive on")
    parser.add_argument("--peer", required=True, type=endpoint, help="HOST:PORT of the other end")
    parser.add_argument("--key", required=True, help="32-byte key, hex")
    parser.add_argument("--cipher", choices=CIPHERS, default="libsodium")
    args = parser.parse_args()
    key = bytes.fromhex(args.key)
    if len(key) != KEY_BYTES:
        parser.error("--key must be 32 bytes of hex")
    seal, open_ = ciphers(args.cipher, key)
    tap = TunTapDevice(name=args.tap, flags=IFF_TAP | IFF_NO_PI)
    tap.mtu = args.mtu
    subprocess.run(["ip", "addr", "add", args.address, "dev", args.tap], check=True)
    subprocess.run(["ip", "link", "set", args.tap, "up"], check=True)
    os.set_blocking(tap.fileno(), False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(args.listen)
    sock.setblocking(False)
    print(f"forwarding {args.tap} <-> {args.peer[0]}:{args.peer[1]} ({args.cipher})", flush=True)
    forward(tap.fileno(), sock, args.peer, seal, open_)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
