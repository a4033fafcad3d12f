"""Issue 16: the controller's database opens after a kill at every statement of its first start or its
schema migration (each step is one transaction with its version stamp), with every network and member.

The kill is real: a forked child opens the database and SIGKILLs itself just before its Nth statement,
for every N until one open runs to the end. The crash loops (tests/integration/test_crash_loops.py) kill
at random moments; these are the moments a random kill almost never hits.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from l2mesh.edge.controller.sqlite_storage import SCHEMA_VERSION, SqliteStorage
from tests.unit.test_sqlite_migration import NETWORKS, schema_of, v1_database

MAX_STATEMENTS = 100  # far more than a start from version 1 makes: a loop that never ends is a failure


def open_killed_before(path: Path, statement: int) -> bool:
    """Open path in a child that dies by SIGKILL before its statement-th statement; False when it finished first."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            made = 0

            def counted(original: Callable[..., Any]) -> Callable[..., Any]:
                def run(self: SqliteStorage, *args: Any) -> Any:
                    nonlocal made
                    if made == statement:
                        os.kill(os.getpid(), signal.SIGKILL)
                    made += 1
                    return original(self, *args)

                return run

            for name in ("_execute", "_begin", "_commit"):
                setattr(SqliteStorage, name, counted(getattr(SqliteStorage, name)))
            SqliteStorage(path)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0
    return False


@pytest.mark.parametrize("start", ["fresh", "version 1"])
def test_the_database_opens_whole_after_a_kill_at_any_statement_of_a_start(tmp_path: Path, start: str) -> None:
    original = tmp_path / "original.db"
    if start == "version 1":
        networks, members = v1_database(original)
    else:
        networks, members = [], []
    killed_at = 0
    for statement in range(MAX_STATEMENTS):
        path = tmp_path / f"killed-{statement}.db"
        if original.exists():
            shutil.copy(original, path)
        if not open_killed_before(path, statement):
            break
        killed_at += 1
        storage = SqliteStorage(path)  # the next start
        try:
            assert schema_of(path) == SCHEMA_VERSION
            assert storage.list_networks() == networks
            assert [m for n in NETWORKS for m in storage.list_members(n)] == members
        finally:
            storage.close()
    else:
        pytest.fail(f"a start made more than {MAX_STATEMENTS} statements")
    # A fresh start only reads and stamps; a migration from version 1 runs three steps of several statements.
    assert killed_at >= (2 if start == "fresh" else 10)
