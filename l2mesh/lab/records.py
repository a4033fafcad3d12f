"""Who owns a lab run, and what it made: one small JSON record per run under /run/l2mesh-lab/.

A run's record names its owner (PID and kernel start time), its namespaces
(each written down before `ip netns add`, so nothing can exist unrecorded)
and the processes it started. /run is a tmpfs: records vanish at reboot, as
namespaces do. A record is created whole and exclusively (written aside,
then hard-linked into place), so two runs never share a run id and a sweep
never reads half a record.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from l2mesh.lab.errors import LabError
from l2mesh.lab.processes import is_running, process_start_ticks

RECORD_DIR = Path("/run/l2mesh-lab")
RUN_ID_HEX_DIGITS = 4  # "l2mt-" + 4 hex digits: a tag of 9 characters, roles and ports stay short


@dataclass
class RunRecord:
    tag: str  # prefix + run id; every namespace of the run is named tag-role
    owner_pid: int
    owner_start: int | None  # owner's start time in clock ticks since boot: a reused PID has another
    namespaces: list[str] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)  # {"pid", "start", "label"}
    kept: bool = False  # left running on purpose (the demo's --keep): a sweep leaves it alone

    def path(self, record_dir: Path) -> Path:
        return record_dir / f"{self.tag}.json"

    def owner_alive(self) -> bool:
        return is_running(self.owner_pid, self.owner_start)

    def save(self, record_dir: Path) -> None:
        temp = self._temp(record_dir)
        temp.write_text(json.dumps(asdict(self), indent=2))
        temp.replace(self.path(record_dir))  # atomic: a reader sees the old record or the new one

    def create(self, record_dir: Path) -> bool:
        """Write the record only if no run holds its tag yet; False when one does."""
        temp = self._temp(record_dir)
        temp.write_text(json.dumps(asdict(self), indent=2))
        try:
            os.link(temp, self.path(record_dir))
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)
        return True

    def remove(self, record_dir: Path) -> None:
        self.path(record_dir).unlink(missing_ok=True)

    def _temp(self, record_dir: Path) -> Path:
        return record_dir / f".{self.tag}.{os.getpid()}.tmp"


def new_record(prefix: str, record_dir: Path, taken: Collection[str] = ()) -> RunRecord:
    """A record under a run id no other run holds (nor any namespace in `taken`), owned by this process."""
    record_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    owner_start = process_start_ticks(os.getpid())
    for _ in range(100):
        tag = prefix + secrets.token_hex(RUN_ID_HEX_DIGITS // 2)
        if any(name.startswith(f"{tag}-") for name in taken):
            continue
        record = RunRecord(tag, os.getpid(), owner_start)
        if record.create(record_dir):
            return record
    raise LabError(f"no free run id for {prefix} in {record_dir} after 100 tries")


def load_records(record_dir: Path, prefix: str = "") -> list[RunRecord]:
    """Every readable run record whose tag starts with prefix; unreadable ones are removed (nothing in them can be acted on)."""
    records = []
    for path in sorted(record_dir.glob(f"{prefix}*.json")) if record_dir.is_dir() else []:
        try:
            records.append(RunRecord(**json.loads(path.read_text())))
        except FileNotFoundError:
            continue  # its run just ended
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)
    return records
