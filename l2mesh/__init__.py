"""l2mesh: a self-hostable layer-2 overlay (a distributed, encrypted Ethernet switch over UDP)."""

__version__ = "0.1.0"
