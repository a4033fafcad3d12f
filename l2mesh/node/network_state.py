"""What a node holds per joined network: its status and signed config, its switch, and its multicast and bridge timers."""

from __future__ import annotations

from l2mesh.ids import member_mac
from l2mesh.netconf import NetworkConfig
from l2mesh.node.events import NetworkStatus
from l2mesh.switch import NetworkSwitch
from l2mesh.wire.messages import FRAME_HEADER, MessageKind


class NetworkState:
    def __init__(self, network_id: int, local_node_id: int) -> None:
        self.network_id = network_id
        self.status = NetworkStatus.REQUESTING
        self.config: NetworkConfig | None = None
        self.mac = member_mac(local_node_id, network_id)
        self.switch = NetworkSwitch(network_id, local_node_id, self.mac)
        # Prebuilt inner-message headers: one concatenation per frame on the send path.
        self.frame_header = FRAME_HEADER.pack(MessageKind.FRAME, network_id)
        self.offload_header = FRAME_HEADER.pack(MessageKind.FRAME_OFFLOAD, network_id)
        self.local_groups: frozenset[bytes] = frozenset()  # multicast groups our TAP listens to
        self.next_group_refresh_s = 0.0
        self.storms_reported: set[int] = set()
        self.next_hello_s = 0.0
        self.loop_neighbours_before: set[int] = set()

    @property
    def forwarding(self) -> bool:
        """Frames cross only on a network whose config we hold and that the controller has not refused."""
        return self.config is not None and self.status is NetworkStatus.OK
