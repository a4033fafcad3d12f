"""A throw-away PostgreSQL server for tests: Debian's binaries, one data directory under /tmp, a Unix socket only.

initdb and postgres refuse to run as root, and `make test` runs as root: then
both run as the `postgres` user the Debian package creates, in a directory
made for it under /tmp (root's home, where the repository may live, can be
0700). Durability is switched off server-wide (fsync=off): the tests check
the storage's logic, not the disk. Each test gets a schema of its own (its
URL sets search_path), not a database: CREATE DATABASE takes most of a second
on a loaded machine, CREATE SCHEMA a millisecond. Notifications are per
database, so tests that listen rely on a worker's tests running one at a time.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

SERVER_USER = "postgres"  # created by Debian's postgresql package
DIR_PREFIX = "l2mt-pg-"
OWNER_FILE = "owner.pid"  # the test process that started the server: when it is gone, so should the server be
START_TIMEOUT_S = 60.0
TEST_DATABASE = "l2mt"


class PgUnavailable(Exception):
    """No PostgreSQL binaries here, or the server did not start: the tests that need it skip."""


def find_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parent.parent.name))
    if not candidates:
        raise PgUnavailable("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres; `scripts/install-debs.sh postgresql`)")
    return Path(candidates[-1]).parent


class PgServer:
    """One postgres process with one test database; schemas made on demand, each reachable by a libpq URL over the socket."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PgUnavailable(f"no `{SERVER_USER}` user to run PostgreSQL as (running as root)") from None
        self._remove_abandoned()
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir="/tmp"))
        (self.dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.data_dir = self.dir / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self._admin_conn: psycopg.Connection[Any] | None = None
        self._names = count()
        self.user = SERVER_USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    def _remove_abandoned(self) -> None:
        """Servers a killed test run left behind (their owner process is gone): stopped, and their directories removed."""
        for directory in Path("/tmp").glob(f"{DIR_PREFIX}*"):
            try:
                os.kill(int((directory / OWNER_FILE).read_text()), 0)
                continue  # its test run is alive (another worker, another checkout)
            except (OSError, ValueError):
                pass
            if (directory / "data" / "postmaster.pid").exists():
                subprocess.run(self._command("pg_ctl", "stop", "-D", str(directory / "data"), "-m", "immediate", "-w"), capture_output=True)
            shutil.rmtree(directory, ignore_errors=True)

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", SERVER_USER, "--", *command] if self.as_root else command

    def start(self) -> PgServer:
        if self.as_root:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        os.chmod(self.dir, 0o700)
        initdb = subprocess.run(
            self._command("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"),
            capture_output=True,
        )
        if initdb.returncode != 0:
            raise PgUnavailable(f"initdb failed: {initdb.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
        self._run_postgres()
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEST_DATABASE}")
        return self

    def _admin(self) -> psycopg.Connection[Any]:
        """A session in the test database kept for creating schemas (a connection per test would fork a backend each)."""
        if self._admin_conn is None or self._admin_conn.closed:
            self._admin_conn = psycopg.connect(self.url(TEST_DATABASE), autocommit=True)
        return self._admin_conn

    def _run_postgres(self) -> None:
        """Start the server on the data directory and return once it takes connections."""
        log = open(self.dir / "postgres.log", "ab")
        self.process = subprocess.Popen(
            self._command(
                "postgres", "-D", str(self.data_dir), "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.dir}",
                "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50",
            ),
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.dir / "postgres.log").read_text(errors="replace").strip().splitlines()[-1:]
                    self.stop()
                    raise PgUnavailable(f"postgres did not start: {tail}") from None
                time.sleep(0.05)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (every session ends), stay down down_s, start it again on the same data."""
        self._stop_postgres()
        time.sleep(down_s)
        self._run_postgres()

    def url(self, database: str, **settings: str) -> str:
        """A libpq URL for the database; settings (search_path=...) are set for each session it opens."""
        url = f"postgresql:///{database}?host={self.dir}&user={self.user}"
        if settings:
            url += "&options=" + quote(" ".join(f"-c{name}={value}" for name, value in settings.items()))
        return url

    def create_schema(self, **settings: str) -> str:
        """A new empty schema in the test database: the URL of a session that works in it."""
        name = f"t{next(self._names)}"
        self._admin().execute(f"CREATE SCHEMA {name}")
        return self.url(TEST_DATABASE, search_path=name, **settings)

    def _stop_postgres(self) -> None:
        """pg_ctl stop -m fast (by the postmaster.pid of this data directory)."""
        if self._admin_conn is not None:
            self._admin_conn.close()
        if self.process is not None and self.process.poll() is None:
            subprocess.run(self._command("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w"), capture_output=True)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()  # our own child, by its PID
                self.process.wait()

    def stop(self) -> None:
        """The server, then its directory."""
        self._stop_postgres()
        shutil.rmtree(self.dir, ignore_errors=True)
