"""Crash-safe files in a state directory: write to a temporary file, fsync, rename, fsync the directory.

Every piece of state l2mesh keeps (keys, joined networks, cached configs)
goes through here, so a crash at any moment leaves either the old or the new
file, never a torn one. A crash mid-write leaves its temporary file behind
(named after the writer's PID); the next start removes those whose writer is
gone, so they do not pile up over many crashes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from l2mesh.errors import StateError

PRIVATE_FILE_MODE = 0o600
STATE_DIR_MODE = 0o700
# The temporary names atomic_write_bytes and create_exclusively write under: .NAME.tmp.PID, .NAME.new.PID.HEX
_TEMPORARY_RE = re.compile(r"\..+\.(?:tmp\.(?P<tmp_pid>[0-9]+)|new\.(?P<new_pid>[0-9]+)\.[0-9a-f]+)")


def ensure_state_dir(path: Path) -> Path:
    """path, created if missing (mode 0700), without the temporary files of writers that crashed."""
    try:
        path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise StateError(f"state directory {path} is not a directory")
    remove_stale_temporaries(path)
    return path


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: alive
    return True


def remove_stale_temporaries(directory: Path) -> int:
    """Remove the temporary files in directory whose writer process is gone (killed mid-write); how many.

    A live writer's are left alone: another process (`l2mesh id` beside a
    daemon) may be writing in the same directory right now.
    """
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        match = _TEMPORARY_RE.fullmatch(name)
        if match is None or _process_exists(int(match["tmp_pid"] or match["new_pid"])):
            continue
        try:
            (directory / name).unlink()
            removed += 1
        except OSError:
            pass  # gone already (another start sweeping), or not ours to remove
    return removed


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        _write_synced(tmp, data, mode)
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateError(f"cannot write {path}: {exc.strerror}") from None


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path: Path, value: Any, mode: int = PRIVATE_FILE_MODE) -> None:
    atomic_write_bytes(path, json_bytes(value), mode)


def create_exclusively(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Create path with data, whole and synced, unless it exists: True if this call created it.

    The data goes to a temporary file first and is then hard-linked into
    place: link() fails if the name exists, so of several racing writers
    exactly one wins, and no reader ever sees a partly written file.
    """
    tmp = path.with_name(f".{path.name}.new.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        _write_synced(tmp, data, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        _fsync_directory(path.parent)
        return True
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}") from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def read_json(path: Path) -> Any:
    """The JSON document at path; a missing, unreadable or malformed file is a StateError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{path} does not exist") from None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than the parser recurses
        raise StateError(f"{path} is corrupted: not valid JSON") from None
