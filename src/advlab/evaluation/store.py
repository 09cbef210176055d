"""The run folder's store: every finished unit of work, persisted the moment it finishes.

One SQLite file per process (``store-<rank>.sqlite``) in write-ahead-log mode, one
transaction per unit: a run killed at any instant (SIGKILL included) keeps every unit that
committed and nothing half-written.  On restart every store file of the folder is read, so a
run resumes whatever number of processes it is restarted with, and recomputes nothing that
finished.  Units hold NumPy arrays (stored as ``.npy`` bytes, never pickled) and a JSON dict.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Store", "RunMismatchError", "RunFolderError", "RunLockedError", "encode", "decode"]

SCHEMA = 1


class RunMismatchError(ValueError):
    """The run folder holds a run of a different plan, model or data."""


class RunFolderError(ValueError):
    """The run folder's path cannot hold a run (an existing file, say)."""


class RunLockedError(ValueError):
    """Another live process is writing this run folder (with the same rank)."""


def encode(payload: dict[str, Any]) -> tuple[str, bytes]:
    """Split a unit into its JSON part and its arrays (one ``.npz`` blob, no pickle)."""
    arrays = {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in payload.items() if not isinstance(v, np.ndarray)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return json.dumps(rest, sort_keys=True), buf.getvalue()


def decode(meta: str, blob: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(meta)
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        for k in data.files:
            out[k] = data[k]
    return out


class Store:
    """Finished units of one run folder.

    Parameters
    ----------
    folder:
        The run folder (created if missing).
    identity:
        What the run is (plan fingerprint, model hash, data hash); a folder that holds a
        different identity is refused, so a changed plan never reuses stale units.
    rank:
        This process's rank: it writes ``store-<rank>.sqlite``, and reads every store file.
    """

    def __init__(self, folder: str | Path, identity: dict[str, Any], rank: int = 0) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise RunFolderError(
                f"the run folder {str(self.folder)!r} is an existing file, not a folder; give --out/out= a folder path"
            )
        #: whether this store made the folder (and may remove it again: :meth:`discard_if_empty`)
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self.rank = rank
        self._lock = self._take_lock()
        self.path = self.folder / f"store-{rank}.sqlite"
        self._db = self._connect(self.path)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS units (
                key TEXT PRIMARY KEY, meta TEXT NOT NULL, arrays BLOB NOT NULL, created REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS writes (key TEXT NOT NULL, pid INTEGER NOT NULL, created REAL NOT NULL);
            """
        )
        self._check_identity()
        self.cache: dict[str, dict[str, Any]] = {}
        self.reload()

    def _take_lock(self) -> Any:
        """An exclusive lock on ``lock-<rank>`` for the store's life: a second process that would
        compute the same units into this folder is refused, not left to duplicate the work.
        The kernel releases the lock when its holder dies (``kill -9`` included), so a
        resumed run never waits for a dead one."""
        path = self.folder / f"lock-{self.rank}"
        handle = open(path, "a+")  # noqa: SIM115 - held open for the store's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(
                f"run folder {str(self.folder)!r} is being written by {holder}; wait for it to finish "
                "(rerunning the same command afterwards resumes it) or use another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        return handle

    def discard_if_empty(self) -> None:
        """After a failed run: remove the folder if this store created it and nothing finished,
        so no half-written folder is left to look like a resumable run."""
        self.close()
        if self.created and not self.cache:
            shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _check_identity(self) -> None:
        wanted = json.dumps({"schema": SCHEMA, **self.identity}, sort_keys=True)
        for path in sorted(self.folder.glob("store-*.sqlite")):
            db = self._db if path == self.path else self._connect(path)
            try:
                row = db.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
            except sqlite3.OperationalError:
                row = None
            finally:
                if db is not self._db:
                    db.close()
            if row is not None and row[0] != wanted:
                found = json.loads(row[0])
                diff = sorted(k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k))
                raise RunMismatchError(
                    f"run folder {str(self.folder)!r} holds another run (different {', '.join(diff)}); "
                    "use a new output folder or delete this one"
                )
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('identity', ?)", (wanted,))

    def reload(self) -> None:
        """Read every finished unit of every store file of the folder."""
        for path in sorted(self.folder.glob("store-*.sqlite")):
            db = self._db if path == self.path else self._connect(path)
            try:
                for key, meta, blob in db.execute("SELECT key, meta, arrays FROM units"):
                    self.cache.setdefault(key, decode(meta, blob))
            except sqlite3.OperationalError:
                pass
            finally:
                if db is not self._db:
                    db.close()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)

    def put(self, key: str, payload: dict[str, Any]) -> None:
        """Persist one finished unit (one transaction)."""
        meta, blob = encode(payload)
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?)", (key, meta, blob, now))
            self._db.execute("INSERT INTO writes VALUES (?, ?, ?)", (key, os.getpid(), now))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.cache[key] = decode(meta, blob)

    def writes(self) -> list[tuple[str, int]]:
        """Every write ever made to this process's store file: ``(key, pid)`` (for audits of
        resumption: a finished unit is never written twice)."""
        return [(k, p) for k, p in self._db.execute("SELECT key, pid FROM writes ORDER BY rowid")]

    def close(self) -> None:
        self._db.close()
        if not self._lock.closed:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
