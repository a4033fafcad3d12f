"""Fuzz targets for `l2mesh netcheck`'s client (l2mesh/netcheck.py): what the servers it asks send back.

A real controller and root core in memory (tests/unit/test_netcheck.py's
Reflectors) answer a real Netcheck once; their answers (identity responses,
handshake responses, sealed probe replies) are the seeds. Each input then
meets a Netcheck put back, field by field, into the state that answer was
for: keys not yet known for an identity response, a probe outstanding for
a probe reply. Plaintext inputs are sealed with the controller's live
session to the netcheck, so the message parsing and probe matching behind
the AEAD run too.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from l2mesh.identity import Identity
from l2mesh.netcheck import Netcheck, Server
from l2mesh.wire.packets import CookieReply, IdentityResponse, PacketType
from l2mesh.wire.messages import Keepalive, PathProbe, PathProbeReply
from tests.fuzz import corpus
from tests.fuzz.targets import Target
from tests.fuzz.targets_cores import STEP_S, STRANGERS, choose, message_strategy, packet_strategy
from tests.fuzz.worlds import outcome
from tests.unit.harness import Controller, FakeClock
from tests.unit.test_netcheck import CONTROLLER_AT, ROOT_AT, Reflectors, cone, run

PROBE_ID = 0x0123456789ABCDEF  # the probe every input finds outstanding
OBSERVED_SEEDS = (("198.18.7.2", 40000), ("2001:db8::7", 9993), ("0.0.0.0", 0))


class NetcheckTarget(Target):
    """A Netcheck that has asked a controller (keys pinned by id) and a root (keys fetched), both answered."""

    reset_every = 3000
    directory: tempfile.TemporaryDirectory[str] | None = None
    controller: Controller | None = None

    def setup(self) -> list[bytes]:
        self.close()
        self.directory = tempfile.TemporaryDirectory(prefix="l2mesh-fuzz-netcheck-")
        self.controller = Controller(f"sqlite://{Path(self.directory.name) / 'controller.db'}", FakeClock(), endpoint=CONTROLLER_AT)
        self.reflectors = Reflectors(self.controller)
        self.answers: list[bytes] = []
        deliver = self.reflectors.deliver

        def recorded(data: bytes, server: Any, seen_from: Any, now: float) -> list[bytes]:
            answers = deliver(data, server, seen_from, now)
            self.answers.extend(answers)
            return answers

        self.reflectors.deliver = recorded  # type: ignore[method-assign]
        self.identity = Identity.generate()
        self.check = Netcheck([Server("controller", CONTROLLER_AT, expected_id=self.controller.node_id), Server("root", ROOT_AT)],
                              self.identity)
        run(self.check, self.reflectors, cone)
        assert self.check.done and all(server.observed is not None for server in self.check.servers)
        self.keys = {server.endpoint: server.identity for server in self.check.servers}
        self.now = 10.0
        return self.make_seeds()

    def make_seeds(self) -> list[bytes]:
        raise NotImplementedError

    def rewind(self, keys_unknown_at: Any = None) -> None:
        """Every server asked again: a probe outstanding, no answer yet; keys unknown where an identity response goes."""
        for server in self.check.servers:
            server.identity = None if server.endpoint == keys_unknown_at else self.keys[server.endpoint]
            server.error, server.observed, server.probe_id = None, None, PROBE_ID
            server.rtts_ms.clear()

    def deliver(self, data: bytes) -> str:
        """data from one of the servers (now and then from a stranger); what the netcheck made of it."""
        check = self.check
        self.now += STEP_S
        way = choose(data, 20)
        source = STRANGERS[choose(data, len(STRANGERS), 1)] if way == 0 else ROOT_AT if way < 8 else CONTROLLER_AT
        self.rewind(source if data[:1] == bytes([PacketType.IDENTITY_RESPONSE]) else None)
        before = Counter(check.drops)
        sent = check.datagram(data, source, self.now)
        check.report()  # what `l2mesh netcheck` prints, made from whatever the input left behind
        server = check.by_endpoint.get(source)
        answered = "answered" if server is not None and server.observed is not None else \
            "refused_keys" if server is not None and server.error else "taken" if sent else "accepted"
        return outcome(before, check.drops, answered)

    def close(self) -> None:
        if self.controller is not None:
            self.controller.close()
            self.controller = None
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None


class NetcheckFromServer(NetcheckTarget):
    """Outer packets from a server: identity responses, handshake responses, cookie replies, sealed probe replies."""

    name = "netcheck.from_server"

    def make_seeds(self) -> list[bytes]:
        controller_keys = self.controller.identity.public if self.controller is not None else Identity.generate().public
        session = self.check.servers[0].session
        assert session is not None and session.current is not None
        forged = Identity.generate()
        return [
            *self.answers,
            IdentityResponse.build({"x25519": controller_keys.x25519_public, "ed25519": controller_keys.ed25519_public}),
            IdentityResponse.build({"x25519": forged.x25519_public, "ed25519": forged.ed25519_public}),
            CookieReply.build({"receiver_index": session.current.local_index, "nonce": bytes(24), "encrypted_cookie": bytes(32)}),
            *corpus.outer_packets()[:4],
        ]

    def run(self, data: bytes) -> str:
        return self.deliver(data)

    def strategy(self) -> st.SearchStrategy[bytes]:
        return packet_strategy()


class NetcheckProbeReply(NetcheckTarget):
    """Messages the controller sends in its live session with the netcheck: probe replies above all."""

    name = "netcheck.probe_reply"

    def make_seeds(self) -> list[bytes]:
        return [
            *(PathProbeReply.build({"probe_id": PROBE_ID, "observed": observed}) for observed in OBSERVED_SEEDS),
            PathProbeReply.build({"probe_id": PROBE_ID + 1, "observed": OBSERVED_SEEDS[0]}),
            PathProbe.build({"probe_id": PROBE_ID}),
            Keepalive.build({}),
            *corpus.inner_messages()[:6],
        ]

    def run(self, data: bytes) -> str:
        assert self.controller is not None
        client = self.controller.core.clients.by_static.get(self.identity.x25519_public)
        sealed = client.session.seal(data, self.now) if client is not None else None
        if sealed is None:
            self.setup()
            return "session_gone"
        self.now += STEP_S
        self.rewind()
        before = Counter(self.check.drops)
        self.check.datagram(bytes(sealed), CONTROLLER_AT, self.now)
        self.check.report()
        return outcome(before, self.check.drops, "answered" if self.check.servers[0].observed is not None else "accepted")

    def strategy(self) -> st.SearchStrategy[bytes]:
        return st.one_of(
            st.builds(lambda probe_id, observed: PathProbeReply.build({"probe_id": probe_id, "observed": observed}),
                      st.sampled_from([PROBE_ID, 0, 2**64 - 1]), st.sampled_from(OBSERVED_SEEDS)),
            message_strategy(),
        )


def netcheck_targets() -> list[Target]:
    return [NetcheckFromServer(), NetcheckProbeReply()]
