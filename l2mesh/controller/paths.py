"""Where a controller listens and where it leaves its API address and token (shared by server and CLI)."""

from __future__ import annotations

from l2mesh.ports import DEFAULT_API_PORT, DEFAULT_CONTROLLER_PORT
from l2mesh.udp import Endpoint

DEFAULT_LISTEN: Endpoint = ("0.0.0.0", DEFAULT_CONTROLLER_PORT)
DEFAULT_API: Endpoint = ("127.0.0.1", DEFAULT_API_PORT)
TOKEN_FILE = "api.token"
API_FILE = "api.json"
