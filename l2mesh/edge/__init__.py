"""The I/O edge: everything that touches the world (the reactor thread, UDP sockets, TAP devices,
state files, the control socket, the admin HTTP API, the daemons' start-up). The sans-IO cores
below it (wire, crypto, session, switch, node, controller) never import it."""
