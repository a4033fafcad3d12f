"""The root process (`l2mesh-ctl root`): its UDP socket and TCP fallback around l2mesh.root's core."""
