"""`l2mesh-ctl serve --db URL`: which storage back-end a database URL names, opened.

sqlite:///PATH          a SQLite file (PATH absolute: sqlite:///var/lib/l2mesh-ctl/controller.db)
postgresql://...        a libpq URL (also postgres://), e.g. postgresql:///l2mesh?host=/run/postgresql&user=l2mesh
no URL                  the SQLite file in the state directory, as before --db existed
"""

from __future__ import annotations

from pathlib import Path

from l2mesh.controller.storage import Storage
from l2mesh.edge.controller.sqlite_storage import DATABASE_FILE, SqliteStorage
from l2mesh.errors import StateError

SQLITE_PREFIX = "sqlite://"
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def open_storage(url: str | None, state_dir: Path) -> Storage:
    """The storage a --db URL names (None: the state directory's SQLite file); StateError in one line if it cannot be used."""
    return storage_from_url(url if url is not None else f"{SQLITE_PREFIX}{(state_dir / DATABASE_FILE).absolute()}")


def sqlite_file(url: str) -> Path:
    """sqlite:///PATH -> PATH; StateError in one line unless PATH is an absolute file path."""
    path = url[len(SQLITE_PREFIX):] if url.startswith(SQLITE_PREFIX) else ""
    if not path.startswith("/") or path.endswith("/"):
        raise StateError(f"bad --db URL {url!r}: a SQLite URL is sqlite:///ABSOLUTE/PATH/TO/FILE")
    return Path(path)


def storage_from_url(url: str) -> Storage:
    if url.startswith(SQLITE_PREFIX):
        return SqliteStorage(sqlite_file(url))
    if url.startswith(POSTGRESQL_SCHEMES):
        # Imported here: psycopg is needed only by those who use PostgreSQL.
        from l2mesh.edge.controller.pg_storage import PgStorage

        return PgStorage(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise StateError(f"bad --db URL: unknown scheme {scheme!r} (use sqlite:///PATH or postgresql://...)")
