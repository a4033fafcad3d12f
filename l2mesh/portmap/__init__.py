"""Port mapping on the home router, sans-IO: NAT-PMP (RFC 6886) today.

A member behind a NAT that offers port mapping asks it to forward its UDP
port and advertises the mapped (external ip, port) like a local endpoint, so
peers reach it directly even when the NAT is symmetric. The edge
(l2mesh/edge/node/portmap.py) finds the gateway and moves the bytes.
"""
