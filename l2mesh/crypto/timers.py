"""Session lifetimes and handshake timing, with units in the names (after WireGuard's timers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionLimits:
    # A keypair is replaced after this long or this many messages...
    rekey_after_time_s: float = 120.0
    rekey_after_messages: int = 2**60
    # ...and refused after this long or this many (the replacement had time to land).
    reject_after_time_s: float = 180.0
    reject_after_messages: int = 2**64 - 2**13 - 1
    # The responder of a keypair waits this much longer before re-keying, so
    # both ends do not start crossing handshakes at the same moment.
    responder_rekey_delay_s: float = 15.0
    # A session with no traffic either way for this long is forgotten
    # (keys wiped, state freed); the next frame sets it up again.
    idle_expiry_s: float = 540.0
    # A member peer (not a controller or root) with no traffic either way for
    # this long shrinks back to its config entry (node/peers.py KnownMember, a
    # few hundred bytes); its next message makes it a full peer again. Only
    # once its keys have expired too (reject_after_time_s after they were
    # made) and no handshake is under way: nothing usable is thrown away.
    idle_peer_forget_s: float = 180.0
    # Handshake retransmission: first retry after the initial delay, then
    # doubling up to the maximum, giving up after give_up_s.
    handshake_retry_initial_s: float = 0.5
    handshake_retry_max_s: float = 8.0
    handshake_give_up_s: float = 90.0
    # Received traffic and sent nothing back for this long: send a keepalive
    # so the sender learns the session (and the path) still works.
    keepalive_after_s: float = 10.0
    # Sent data and heard nothing back for this long (a peer that answers
    # would have sent at least a keepalive): the peer lost our keys, e.g. it
    # restarted; start a new handshake.
    new_handshake_after_silence_s: float = 15.0
    # A transport packet for an index we do not know, from where a peer
    # lives, hints that the peer lost our keys; at most this many handshakes
    # per second are started on such unauthenticated hints.
    unknown_index_hints_per_s: float = 2.0
    # Handshake initiations processed per second, per source and overall.
    handshake_rate_per_source_per_s: float = 20.0
    handshake_burst_per_source: float = 40.0
    handshake_rate_total_per_s: float = 2000.0
    # Cookie replies sent under load, per source address and overall. A real
    # initiator retries every 0.5 s and needs one reply per retry; a spoofed
    # flood would otherwise cost a seal and a send per packet. Per source
    # allows several members behind one NAT address.
    cookie_replies_per_source_per_s: float = 10.0
    cookie_reply_burst_per_source: float = 20.0
    cookie_replies_total_per_s: float = 1000.0


DEFAULT_LIMITS = SessionLimits()
