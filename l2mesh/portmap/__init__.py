"""Port mapping on the home router, sans-IO: NAT-PMP (RFC 6886) and PCP (RFC 6887).

A member behind a NAT that offers port mapping asks it to forward its UDP
port and advertises the mapped (external ip, port) like a local endpoint, so
peers reach it directly even when the NAT is symmetric. client.py keeps the
mapping (timers, retries, renewals, restarts); natpmp.py and pcp.py turn
its two steps into each protocol's bytes (protocol.py says what they share).
The edge (l2mesh/edge/node/portmap.py) finds the gateway and moves the bytes.
"""
