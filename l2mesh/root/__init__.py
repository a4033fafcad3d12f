"""A root server, sans-IO: where nodes register, are looked up, meet (hole punching) and relay (issue 11).

A root knows where nodes are, not what they say: it files each node's
proven keys and addresses, answers look-ups with only that, and forwards
end-to-end encrypted relay envelopes it cannot open.
"""
