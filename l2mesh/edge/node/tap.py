"""TAP devices and their addresses: python-pytun makes the device, netlink.py sets addresses."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import time

import pytun

from l2mesh.edge.node.netlink import RtNetlink, link_index
from l2mesh.errors import L2meshError

TAP_NAME_PREFIX = "l2m"
TUN_DEVICE = "/dev/net/tun"
# linux/if_tun.h: hand checksums and TCP segmentation of super-frames (up to
# 64 KiB) to whoever writes the frame out; frames carry a virtio_net_hdr.
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
# UDP segmentation offload (kernel 6.2+): the kernel may hand us UDP_L4 super-frames (a local
# program sending with UDP_SEGMENT), which cross to peers as FRAME_OFFLOAD like TCP ones; and it
# takes UDP_L4 frames we write, which the receive side makes of runs of small datagrams.
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
USO_OFFLOADS = TUN_F_USO4 | TUN_F_USO6
# Set to 1 to keep UDP segmentation offload off (A/B measurements, a kernel that misbehaves).
NO_USO_ENV = "L2MESH_NO_USO"
VNET_HEADER = bytes(10)  # virtio_net_hdr with no offload work: what plain frames are written with
# Sealed and fragmented, a frame this size fits one UDP_SEGMENT send: 44 fragments of 1,428 bytes
# (62,832) hold it with its message header, virtio header and tag (see _cap_super_frames).
SUPER_FRAME_BYTES = 61440
# A TAP closed while another thread starts a program (nft, resolvectl) lives on, attached, until that
# child has closed its copy of the descriptor: milliseconds (12 ms seen on a loaded machine). Making
# the same name again meanwhile (`l2mesh leave X; l2mesh join X`) fails with EBUSY: wait that out.
BUSY_WAIT_S = 1.0
BUSY_POLL_S = 0.005


class TapError(L2meshError):
    """A TAP device cannot be made or configured."""


def tap_name_for(network_id: int, taken: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """l2m + the network id's first 8 hex digits; those name the controller, so a second network
    of the same controller (name taken) gets l2m + the id's last 12 hex digits (15 characters, the limit)."""
    name = f"{TAP_NAME_PREFIX}{network_id:016x}"[:11]
    if name in taken:
        name = f"{TAP_NAME_PREFIX}{network_id & 0xFFFFFFFFFFFF:012x}"
    return name


def check_tap_support() -> None:
    """Fail early, in one line, when this process cannot create TAP devices."""
    if not os.path.exists(TUN_DEVICE):
        raise TapError(f"{TUN_DEVICE} is missing: load the tun module (modprobe tun) or give the container the device")
    if not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
        raise TapError(f"cannot open {TUN_DEVICE}: run as root or with CAP_NET_ADMIN")


def _attach(name: str) -> pytun.TunTapDevice:
    """A new TAP named name; while the name is busy (see BUSY_WAIT_S), tried again for up to BUSY_WAIT_S."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            return pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI | pytun.IFF_VNET_HDR)
        except pytun.Error as exc:
            if not (exc.args and exc.args[0] == errno.EBUSY) or time.monotonic() >= deadline:
                raise
        time.sleep(BUSY_POLL_S)


def uso_wanted() -> bool:
    """UDP segmentation offload unless L2MESH_NO_USO=1 says otherwise."""
    return os.environ.get(NO_USO_ENV, "") not in ("1", "yes", "true")


def _set_offloads(fd: int, offload: bool) -> bool:
    """TUNSETOFFLOAD with USO added when wanted and the kernel knows it (EINVAL before 6.2: without).

    True: USO is on for this TAP.
    """
    if not offload:
        fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        return False
    if uso_wanted():
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS | USO_OFFLOADS)
            return True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    return False


def _cap_super_frames(name: str) -> None:
    """Super-frames no larger than one segmented UDP send carries once sealed and fragmented.

    A 64 KiB frame needs 46 fragments of a 1,444-byte datagram, more than one
    UDP_SEGMENT send holds (64 KiB in all), so its fragments would reach the
    peer in two receives and be reassembled one by one; at SUPER_FRAME_BYTES
    they fit 44 and the peer joins them in one go (Reassembler.take_whole).
    An older kernel that refuses the setting keeps 64 KiB frames: still correct.
    """
    index = link_index(name)
    if index is None:
        return
    try:
        with RtNetlink() as netlink:
            netlink.set_gso_max_size(index, SUPER_FRAME_BYTES)
    except OSError:
        pass


class TapDevice:
    """One non-persistent TAP (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): closing it removes the interface.

    The virtio header is always on, so frames peers send with offload work
    left can be written; `offload` decides whether this TAP hands us
    super-frames and partial checksums in turn; `uso` says whether UDP ones too.
    """

    def __init__(self, name: str, mac: bytes, mtu_bytes: int, offload: bool = True) -> None:
        try:
            self._device = _attach(name)
            self.uso = _set_offloads(self._device.fileno(), offload)
            self._device.hwaddr = mac
            self._device.mtu = mtu_bytes
            if offload:
                _cap_super_frames(self._device.name)
            self._device.up()
        except (pytun.Error, OSError) as exc:
            if exc.args and exc.args[0] == errno.EBUSY:
                raise TapError(f"cannot create TAP device {name}: another process holds a TAP of that name") from None
            raise TapError(f"cannot create TAP device {name}: {exc} (needs root or CAP_NET_ADMIN)") from None
        self.name = self._device.name
        self.fd = self._device.fileno()
        os.set_blocking(self.fd, False)
        self.addresses: set[str] = set()

    @property
    def mtu_bytes(self) -> int:
        return int(self._device.mtu)

    def set_mtu(self, mtu_bytes: int) -> None:
        if self._device.mtu != mtu_bytes:
            self._device.mtu = mtu_bytes

    def set_addresses(self, wanted: set[str]) -> None:
        """Make the managed addresses exactly `wanted` (CIDR strings); others the user added are left alone."""
        index = link_index(self.name)
        if index is None:
            raise TapError(f"interface {self.name} disappeared")
        with RtNetlink() as netlink:
            for cidr in sorted(self.addresses - wanted):
                try:
                    netlink.delete_address(index, ipaddress.ip_interface(cidr))
                except OSError:
                    pass
            for cidr in sorted(wanted - self.addresses):
                try:
                    netlink.add_address(index, ipaddress.ip_interface(cidr))
                except OSError as exc:
                    if exc.errno != errno.EEXIST:  # already there is what we want
                        raise TapError(f"cannot add {cidr} to {self.name}: {exc}") from None
        self.addresses = set(wanted)

    def close(self) -> None:
        try:
            self._device.close()
        except pytun.Error:
            pass
