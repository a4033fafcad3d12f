"""What `l2mesh daemon` was asked to do, and how it travels to the process it re-executes into (l2mesh/edge/reexec.py).

The options cross the exec as JSON in OPTIONS_ENV, already parsed and checked
by the CLI: the daemon's own process then needs neither argparse nor the
CLI's modules (issue 17: idle RSS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2mesh.errors import L2meshError
from l2mesh.ports import DEFAULT_NODE_PORT
from l2mesh.root_spec import RootSpec, parse_root_spec

OPTIONS_ENV = "L2MESH_DAEMON_OPTIONS"


@dataclass
class DaemonOptions:
    state_dir: Path
    port: int = DEFAULT_NODE_PORT
    static_netconfs: list[Path] = field(default_factory=list)
    offload: bool = True
    roots: list[RootSpec] = field(default_factory=list)
    port_mapping: bool = True  # NAT-PMP/PCP on the default gateway (--no-port-mapping turns it off)
    metrics_listen: tuple[str, int] | None = None  # --metrics-listen: Prometheus text at http://HOST:PORT/metrics

    def to_json(self) -> str:
        return json.dumps({
            "state_dir": str(self.state_dir),
            "port": self.port,
            "static_netconfs": [str(path) for path in self.static_netconfs],
            "offload": self.offload,
            "roots": [str(root) for root in self.roots],
            "port_mapping": self.port_mapping,
            "metrics_listen": list(self.metrics_listen) if self.metrics_listen is not None else None,
        })

    @classmethod
    def from_json(cls, text: str) -> DaemonOptions:
        """The options to_json wrote; L2meshError (one line) for anything else."""
        try:
            data: dict[str, Any] = json.loads(text)
            listen = data["metrics_listen"]
            options = cls(
                state_dir=Path(data["state_dir"]),
                port=int(data["port"]),
                static_netconfs=[Path(path) for path in data["static_netconfs"]],
                offload=bool(data["offload"]),
                roots=[parse_root_spec(str(root)) for root in data["roots"]],
                port_mapping=bool(data["port_mapping"]),
                metrics_listen=(str(listen[0]), int(listen[1])) if listen is not None else None,
            )
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise L2meshError(f"malformed daemon options in {OPTIONS_ENV}: {exc!r}") from None
        return options
