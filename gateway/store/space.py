"""Disk full: detecting it, the reserve file, the space guard and its policy.

SQLite answers SQLITE_FULL when the filesystem has no room left, and in WAL
mode even a DELETE needs room: its pages are appended to the WAL.
Acknowledged rows must still be able to leave the store, so the store holds
a reserve: a file of `RESERVE_BYTES` (2 MiB) of incompressible bytes beside
the store (`outbox.sqlite.reserve`) that exists only to be given back. On
SQLITE_FULL a commit
  1. checkpoints the WAL and tries once more (a fully checkpointed WAL is
     written again from its start, which needs no new space);
  2. if that fails too, deletes the reserve, enters the disk-full state
     (logged once) and commits everything but the new readings: acks,
     quarantines, confirmations and drop counts, the new readings counted as
     `disk_full`. Should even that fail, it raises `DiskFullError`; the
     caller keeps the acks for the next commit (rows are at worst sent
     again; nothing stored is lost) and counts the readings.
While the disk is full, new durable readings are refused without trying, so
the reserve is spent on deletes and counts only, and the WAL is checkpointed
after each commit so that it is reused instead of grown. Stored rows are
still read and sent. A refused reading gets no seq (no gap at the consumer).

Recovery needs no restart: a commit with readings in the disk-full state
checks the free space (statvfs, no writes); once `RESERVE_BYTES +
RESUME_HEADROOM` are free, if need be after a TRUNCATE checkpoint hands the
WAL's own space back (a disk filled by the store itself, drained by acks),
the reserve is written again and storing resumes (logged once). Entering
the state, and a failed attempt to leave it, hold off the next attempt for
`PROBE_BACKOFF` seconds, doubled (up to a minute) each time the disk is full
again soon after leaving, so a disk at the edge does not flood the log.

Sizing. The reserve must also cover what a checkpoint needs: WAL pages that
extend the database file need that much room in it before the WAL can be
reused. So the WAL is checkpointed every `WAL_CHECKPOINT_BYTES` (1 MiB, half
the reserve) instead of SQLite's default 1000 pages (4 MiB): whatever the
WAL holds fits in the reserve, with the other half left for the deletes.
Cost, measured with 100-row group commits: about 8% more bytes written per
row than the default (a 1 MiB reserve would need 512 KiB checkpoints, +18%).
Why a reserve rather than a size cap computed below the free space: the free
space belongs to the whole filesystem (logs, other services) and shrinks
behind our back, so any cap is stale as soon as it is computed; the reserve
is space the gateway holds and hands to SQLite exactly when the disk runs
out. A reserve that cannot be made at start (a disk already nearly full)
starts the store in the disk-full state; a disk with no room even to open
the store (its -wal and -shm) is a `StoreError`. `max_bytes` still caps the
store itself; a cap above the free space is warned about at start.

`SpaceGuard` is the pure policy (state, back-off, what to try); `Reserve`
is the reserve file; `DiskSpace` does the I/O for one open store: writes
that make room, checkpoints, and leaving the disk-full state.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from gateway.core.errors import MqttGatewayError
from gateway.core.units import format_bytes
from gateway.store.sql import BUSY_TIMEOUT_MS

log = logging.getLogger("gateway.store")  # one logger for the whole store, as operators see it

RESERVE_BYTES = 2 << 20  # given back to SQLite when the disk is full
WAL_CHECKPOINT_BYTES = RESERVE_BYTES // 2  # WAL size that triggers a checkpoint (see above)
RESUME_HEADROOM = 256 << 10  # free beyond the reserve before new readings are stored again
PROBE_BACKOFF = 2.0  # seconds between attempts to leave the disk-full state

# SQLite result codes (the primary code is the low byte of an extended one).
SQLITE_FULL = 13
SQLITE_IOERR_SHMSIZE = 10 | (19 << 8)  # growing the -shm file failed: no room for it


class DiskFullError(MqttGatewayError, sqlite3.OperationalError):
    """A commit failed for want of disk space, even with the reserve given back."""


def is_disk_full(exc: BaseException) -> bool:
    """True when an error means the filesystem has no room (SQLITE_FULL, ENOSPC, EDQUOT)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and ((code & 0xFF) == SQLITE_FULL
                                      or code == SQLITE_IOERR_SHMSIZE):
            return True
        return "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class Probe(Enum):
    """What to try, in the disk-full state, before a commit of new readings."""

    WAIT = "wait"  # not enough room (or backing off): refuse the readings
    RESERVE = "reserve"  # room enough: write the reserve again, then store
    TRUNCATE = "truncate"  # room enough once the WAL hands its space back


class SpaceGuard:
    """The disk-full state and when to try leaving it. Pure: the caller measures and acts.

    Leaving is tried no sooner than `backoff` seconds after entering or after
    a failed try. A disk full again within `settle` seconds of leaving doubles
    the wait (up to `max_backoff`): a disk at the edge changes state a few
    times a minute at first, then at most about once per `max_backoff`.
    """

    def __init__(self, need: int = RESERVE_BYTES + RESUME_HEADROOM,
                 backoff: float = PROBE_BACKOFF, max_backoff: float = 60.0,
                 settle: float = 60.0) -> None:
        self.need = need
        self.base_backoff = backoff
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.settle = settle
        self.full = False
        self.episodes = 0
        self.not_before = 0.0
        self.left_at: float | None = None

    def enter(self, now: float) -> bool:
        """The disk is full; True when that is news (log it)."""
        if self.full:
            self.not_before = max(self.not_before, now + self.backoff)
            return False
        if self.left_at is not None and now - self.left_at < self.settle:
            self.backoff = min(self.backoff * 2, self.max_backoff)
        else:
            self.backoff = self.base_backoff
        self.not_before = now + self.backoff
        self.full = True
        self.episodes += 1
        return True

    def leave(self, now: float) -> bool:
        """There is room again; True when that is news."""
        was, self.full = self.full, False
        if was:
            self.left_at = now
        return was

    def plan(self, free: int, wal: int, now: float) -> Probe:
        """What to try with `free` bytes free on the disk and a WAL file of `wal` bytes."""
        if not self.full or now < self.not_before:
            return Probe.WAIT
        if free >= self.need:
            return Probe.RESERVE
        if free + wal >= self.need:
            return Probe.TRUNCATE
        return Probe.WAIT

    def failed(self, now: float) -> None:
        """An attempt to leave the state failed: wait before the next one."""
        self.not_before = now + self.backoff


class Reserve:
    """The reserve file: disk space held back for deletes on a full disk."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def held(self) -> bool:
        """True when the file is there with all its blocks allocated."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return st.st_size >= self.size and st.st_blocks * 512 >= self.size

    def make(self) -> bool:
        """Write it (random bytes, so no compressing filesystem shrinks it) and sync it.

        False, leaving no partial file behind, when there is no room.
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                data = memoryview(os.urandom(self.size))
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            if not is_disk_full(exc):
                log.warning("store reserve %s cannot be written: %s", self.path, exc)
            return False
        return True

    def release(self) -> bool:
        """Delete it; True when that gave space back."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("store reserve %s cannot be deleted: %s", self.path, exc)
            return False
        return True


def reserve_path(store: Path) -> Path:
    """Where the reserve of a store lives: beside it."""
    return store.with_name(store.name + ".reserve")


def free_bytes(directory: Path) -> int:
    """Bytes this process may still write on the filesystem of `directory`."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return int(blocks * st.f_frsize)


def file_size(path: Path) -> int:
    """The size of a file; 0 when there is none."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class DiskSpace:
    """The disk space of one open store: its reserve, the disk-full state, writes that make room."""

    def __init__(self, conn: sqlite3.Connection, path: Path, reserve: Reserve,
                 clock: Callable[[], float]) -> None:
        self._conn = conn
        self.path = path
        self.reserve = reserve
        self.guard = SpaceGuard()
        self._clock = clock

    def hold_reserve(self) -> None:
        """At start: hold the reserve, or enter the disk-full state when it cannot be made."""
        if not self.reserve.held() and not self.reserve.make():
            self.guard.enter(self._clock())
            log.error("store %s: disk full at start (%s free, the %s reserve cannot be made): "
                      "new durable readings are dropped and counted until there is room; "
                      "stored ones are still sent", self.path,
                      format_bytes(free_bytes(self.path.parent)), format_bytes(RESERVE_BYTES))

    def check_cap(self, max_bytes: int, used: int) -> None:
        """At start: warn when the disk fills before the store reaches `max_bytes`."""
        free = free_bytes(self.path.parent)
        if free + used < max_bytes:
            log.warning("store %s: store.max_bytes is %s but the disk has only %s free: the disk "
                        "fills before the size cap, and new durable readings are then dropped "
                        "as disk_full", self.path, format_bytes(max_bytes),
                        format_bytes(free))

    def write(self, write: Callable[[], None], shed: Callable[[], None] = lambda: None) -> None:
        """Run `write` (one transaction); on a full disk, make room and try again.

        First a checkpoint (a fully checkpointed WAL is reused from its start);
        then the reserve is given back, the disk-full state entered and
        `shed` called to leave out what must not use the reserve.

        Raises:
            DiskFullError: the last try found no room either.
        """
        error = _full_disk_error(write)
        if error is None:
            return
        if self.checkpoint("PASSIVE"):
            error = _full_disk_error(write)
            if error is None:
                return
        self._enter_disk_full(error)
        shed()
        error = _full_disk_error(write)
        if error is not None:
            raise DiskFullError(f"store {self.path}: {error}") from error

    def _enter_disk_full(self, exc: BaseException) -> None:
        released = self.reserve.release()
        if self.guard.enter(self._clock()):
            log.error("store %s: disk full, new durable readings are dropped and counted; stored "
                      "ones are still sent (%s; %s)", self.path, exc,
                      f"the {format_bytes(RESERVE_BYTES)} reserve {self.reserve.path} was given "
                      "back so acknowledged rows can still be deleted" if released
                      else "no reserve was left to give back")

    def try_resume(self) -> bool:
        """In the disk-full state: is there room again? Remakes the reserve when there is."""
        now = self._clock()
        free = free_bytes(self.path.parent)
        action = self.guard.plan(free, file_size(self._wal_path), now)
        if action is Probe.WAIT:
            return False
        if action is Probe.TRUNCATE:
            self.checkpoint("TRUNCATE")
            free = free_bytes(self.path.parent)
        if free >= self.guard.need and self.reserve.make():
            self.guard.leave(now)
            log.warning("store %s: disk space is back (%s free, reserve made again); new durable "
                        "readings are stored again", self.path, format_bytes(free))
            return True
        self.guard.failed(now)
        return False

    def checkpoint(self, mode: str) -> bool:
        """A WAL checkpoint; True when every frame reached the database file."""
        try:
            if mode != "PASSIVE":  # the other modes wait for readers: not long, on the loop
                self._conn.execute("PRAGMA busy_timeout=200")
            busy, frames, done = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            log.debug("store %s: checkpoint (%s) failed: %s", self.path, mode, exc)
            return False
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return bool(busy == 0 and frames >= 0 and done == frames)

    @property
    def _wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")


def _full_disk_error(write: Callable[[], None]) -> sqlite3.OperationalError | None:
    """Run `write`; the error when it failed for a full disk (any other error propagates)."""
    try:
        write()
    except sqlite3.OperationalError as exc:
        if not is_disk_full(exc):
            raise
        return exc
    return None
