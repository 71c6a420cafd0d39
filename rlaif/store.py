"""The run store: one SQLite file per run directory holding every model call's result.

Results are keyed by a content hash of (model id, template version, call kind, messages,
parameters); a call whose key is present is answered from the store and costs nothing. Each
result is committed as soon as it exists (WAL journal), so a run killed at any point loses at
most the call in flight, and a half-written result can never be read back. The schema grows by
append-only numbered migrations, as in simonw/llm.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rlaif.errors import RunError

STORE_FILE = "store.sqlite"


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE calls ("
        " key TEXT PRIMARY KEY,"
        " kind TEXT NOT NULL,"
        " model TEXT NOT NULL,"
        " result TEXT NOT NULL,"
        " created REAL NOT NULL)"
    )


def _m002_reviews(db: sqlite3.Connection) -> None:
    # Human review decisions (rlaif review): append-only, the latest row of an item counts.
    db.execute(
        "CREATE TABLE reviews ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " item_id TEXT NOT NULL,"
        " reviewer TEXT NOT NULL,"
        " created REAL NOT NULL,"
        " choice TEXT NOT NULL,"
        " winner TEXT,"
        " comment TEXT NOT NULL,"
        " shown TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX reviews_item ON reviews (item_id, id)")


#: the version part of every cache key. The messages themselves are hashed into the key, so a
#: template whose wording changed never meets an old entry; the value stays "2" (the template
#: version when keys were first written) so that existing stores keep answering on resume.
CACHE_KEY_VERSION = "2"

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial, _m002_reviews]


def call_key(model_id: str, kind: str, template_version: str, payload: dict) -> str:
    """Content hash of one model call: what was asked, of which model, with which parameters."""
    canonical = json.dumps(
        {"model": model_id, "kind": kind, "template": template_version, **payload},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Store:
    """An SQLite file of cached model-call results and run metadata.

    One store may be used from several threads (a run labelling pairs concurrently): the
    connection is shared and every statement runs under ``lock``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.OperationalError as e:  # a full disk, a read-only or locked file
            raise RunError(
                f"{self.path}: cannot write the store ({e}); free disk space or make the "
                "directory writable, then rerun the same command"
            ) from e
        except sqlite3.DatabaseError as e:
            raise RunError(
                f"{self.path}: not a usable rlaif store ({e}); choose another --out directory"
            ) from e

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        if version == 0 and tables:
            raise RunError(f"{self.path}: an SQLite file that is not an rlaif store")
        if version > len(MIGRATIONS):
            raise RunError(
                f"{self.path}: written by a newer rlaif (schema {version}); upgrade rlaif"
            )
        for number in range(version, len(MIGRATIONS)):
            with self.db:
                self.db.execute("BEGIN")
                MIGRATIONS[number](self.db)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    # -- calls ------------------------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        """The stored result of a call, or None."""
        with self.lock:
            row = self.db.execute("SELECT result FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, kind: str, model: str, result: dict) -> bool:
        """Store a call's result, committed at once; an existing key is left as it is.

        Returns whether the result was new (False: the key was already stored).
        """
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO calls (key, kind, model, result, created)"
                " VALUES (?,?,?,?,?)",
                (key, kind, model, json.dumps(result, ensure_ascii=False), time.time()),
            )
            return cursor.rowcount == 1

    def count(self, kind: str | None = None) -> int:
        """Number of stored call results (of one kind, if given)."""
        with self.lock:
            if kind is None:
                return self.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            query = "SELECT COUNT(*) FROM calls WHERE kind = ?"
            return self.db.execute(query, (kind,)).fetchone()[0]

    # -- metadata ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A metadata value, or None."""
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value."""
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            self.db.close()
