"""The node daemon's edge: TAP devices, the kernel's multicast memberships, the state directory,
the control socket, and the daemon that feeds the sans-IO core (l2mesh.node) from them."""
