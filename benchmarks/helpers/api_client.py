"""control.py's resident admin-API client, run in the controller's namespace with the benchmark's interpreter.

    api_client.py STATE_DIR

Reads the controller's API address and token from STATE_DIR, opens the
connection, prints {"ready": true}, then answers one JSON request per stdin
line ({"id", "method", "path", "body"}) with one JSON line on stdout: that
id, the monotonic times just before the request and after its answer
(t0, t1), the status and the body, or an error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def answer(client: httpx.Client, request: dict[str, Any]) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        response = client.request(request["method"], request["path"], json=request.get("body"))
        t1 = time.monotonic()
        body = response.json() if response.content else None
        return {"id": request["id"], "t0": t0, "t1": t1, "status": response.status_code, "body": body}
    except (httpx.HTTPError, ValueError) as exc:
        return {"id": request["id"], "t0": t0, "t1": time.monotonic(), "status": None, "error": str(exc)}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    state = Path(argv[0])
    token = (state / "api.token").read_text().strip()
    url = json.loads((state / "api.json").read_text())["url"].rstrip("/") + "/api/v1"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as client:
        client.get("/status").raise_for_status()  # warm: imports done, connection open
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            print(json.dumps(answer(client, json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
