"""The controller's edge: its process (UDP socket, reactor thread) and its admin HTTP API."""
