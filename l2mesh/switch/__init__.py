"""The distributed learning switch, sans-IO: one NetworkSwitch per joined network."""

from l2mesh.switch.switch import MemberPort, NetworkSwitch

__all__ = ["MemberPort", "NetworkSwitch"]
