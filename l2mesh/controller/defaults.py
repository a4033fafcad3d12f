"""A controller's defaults: where it listens, where it leaves its API address and token, its relay bound
(shared by server and CLI, which must not import the server to know them)."""

from __future__ import annotations

from l2mesh.ports import DEFAULT_API_PORT, DEFAULT_CONTROLLER_PORT
from l2mesh.wire.common import Endpoint

DEFAULT_LISTEN: Endpoint = ("0.0.0.0", DEFAULT_CONTROLLER_PORT)
DEFAULT_API: Endpoint = ("127.0.0.1", DEFAULT_API_PORT)
TOKEN_FILE = "api.token"
# Most one member may send through the relay. Dropping part of a run of
# fragments loses whole TCP super-frames, so this is a fairness guard set well
# above what one member normally needs, not a shaper.
DEFAULT_RELAY_LIMIT_MBPS = 5000
API_FILE = "api.json"
