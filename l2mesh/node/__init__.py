"""The node: the sans-IO core (core.py, peers.py) and the trio edge that feeds it (daemon.py, tap.py, udp.py)."""
