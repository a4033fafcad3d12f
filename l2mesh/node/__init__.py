"""The node's sans-IO core: datagrams, TAP frames and time in; datagrams, frames and events out.
The daemon that feeds it from sockets and TAP devices is in l2mesh.edge.node."""
