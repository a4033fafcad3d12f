"""Byte formats of the l2mesh protocol: the one source of truth, no I/O and no policy.

packets.py holds what travels in a UDP datagram (handshakes, transport,
fragments, relay envelopes, identity look-ups); messages.py holds what travels
encrypted inside a transport packet (frames and control messages); bridge.py
holds the Ethernet frames bridge members write themselves (loop protection);
natpmp.py and pcp.py hold the home router's port-mapping protocols.
codec.py parses any packet or message by its leading byte.
"""

from l2mesh.wire.errors import ParseError

__all__ = ["ParseError"]
