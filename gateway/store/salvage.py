"""Reading rows back out of a damaged store file, for the salvage of `recovery.py`.

`salvage_rows` yields every row of a table that SQLite can still read, in
rowid order, skipping the stretches it reports as corrupt; `first_good` is
the pure search that finds where a damaged stretch ends. Reads only: what
is done with the rows is `recovery.py`'s business.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# The columns a salvage copies, per table, in the order `salvage_rows` yields them.
OUTBOX_COLUMNS = ("epoch", "device", "stream", "seq", "qos", "ts", "topic", "payload", "confirm",
                  "acked_at", "resends", "mono", "boot")
SEQUENCE_COLUMNS = ("epoch", "device", "stream", "last_seq")
DROP_COLUMNS = ("reason", "device", "stream", "count")
_DEFAULTS: dict[str, object] = {"confirm": 0, "acked_at": None, "resends": 0}
_LAST_ROWID = 2**63 - 1


@dataclass
class SalvageTally:
    """What one walk over a damaged table found.

    `unreadable` counts the rowids in stretches that could not be read: an
    upper bound of the rows lost there (rows deleted before the damage leave
    holes that are counted too). `unbounded` is True when the end of the
    table could not be found, so how many rows lie beyond is unknown.
    """

    read: int = 0
    unreadable: int = 0
    unbounded: bool = False


def first_good(lo: int, hi: int, good: Callable[[int], bool]) -> int | None:
    """The smallest x in [lo, hi] with `good(x)`, or None.

    Pure. Assumes the bad values starting at `lo` form one run (a damaged
    b-tree page covers a contiguous range of rowids): probes lo, lo+1, lo+2,
    lo+4, ... until one is good, then bisects back to the first good one.
    O(log(hi - lo)) calls of `good`.
    """
    if lo > hi:
        return None
    bad = lo - 1
    x = lo
    step = 1
    while not good(x):
        bad = x
        if x >= hi:
            return None
        x = min(hi, lo + step)
        step *= 2
    while x - bad > 1:
        mid = (bad + x) // 2
        if good(mid):
            x = mid
        else:
            bad = mid
    return x


def salvage_rows(conn: sqlite3.Connection, table: str, columns: tuple[str, ...],
                 tally: SalvageTally) -> Iterator[tuple[Any, ...]]:
    """Every row of `table` that can still be read, in rowid order, as `columns`.

    Reads the table in rowid order until SQLite reports damage, then seeks
    past the damaged stretch (see `first_good`) and goes on. Columns the
    table lacks (an older schema) come back as their defaults. A table that
    cannot be read at all yields nothing and sets `tally.unbounded`.
    """
    try:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        tally.unbounded = True
        return
    if not present:  # every store has the table: a file without it lost all it held
        tally.unbounded = True
        return
    walk = _Walk(conn, table, columns, present, tally)
    hi = _last_rowid(conn, table)
    if hi is None:
        hi = _LAST_ROWID
    after, floor = 0, 1
    while True:
        try:
            # Fast: one scan. The sqlite3 module steps one row ahead of the row it
            # returns, so the row before the damage comes back with the error...
            for row in conn.execute(walk.scan, (after + 1,)):
                after = row[0]
                yield walk.emit(row)
            return
        except sqlite3.DatabaseError:
            pass
        # ...and is read again here, one row per query, up to the damage.
        while True:
            try:
                single = walk.row_at(after + 1)
            except sqlite3.DatabaseError:
                break
            if single is None:
                return
            after = single[0]
            yield walk.emit(single)
        nxt = first_good(max(after + 1, floor), hi, walk.readable_from)
        if nxt is None:
            if hi == _LAST_ROWID:
                tally.unbounded = True
            else:
                tally.unreadable += hi - after
            return
        tally.unreadable += nxt - after - 1
        after, floor = nxt - 1, nxt + 1


class _Walk:
    """The queries that read one table by rowid, and the defaults of the columns it lacks."""

    def __init__(self, conn: sqlite3.Connection, table: str, columns: tuple[str, ...],
                 present: set[str], tally: SalvageTally) -> None:
        self.conn, self.tally = conn, tally
        wanted = ", ".join(c if c in present else "NULL" for c in columns)
        self.missing = {i: _DEFAULTS.get(c) for i, c in enumerate(columns) if c not in present}
        # `rowid >= n`, not `rowid > n - 1`: SQLite seeks to the key given, and the
        # page holding n - 1 may be the damaged one.
        self.scan = f"SELECT rowid, {wanted} FROM {table} WHERE rowid >= ? ORDER BY rowid"
        self.one = self.scan + " LIMIT 1"

    def row_at(self, x: int) -> tuple[Any, ...] | None:
        """The first row from rowid x on; None at the end. Raises on damage."""
        found: tuple[Any, ...] | None = self.conn.execute(self.one, (x,)).fetchone()
        return found

    def readable_from(self, x: int) -> bool:
        try:
            self.row_at(x)
        except sqlite3.DatabaseError:
            return False
        return True

    def emit(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """The values of a row read (without its rowid), counted in the tally."""
        self.tally.read += 1
        values = row[1:]
        if self.missing:
            values = tuple(self.missing.get(i, v) for i, v in enumerate(values))
        return values


def _last_rowid(conn: sqlite3.Connection, table: str) -> int | None:
    """The highest rowid the table has (or, for an AUTOINCREMENT table, ever had)."""
    for sql, args in ((f"SELECT max(rowid) FROM {table}", ()),
                      ("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))):
        try:
            row = conn.execute(sql, args).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None and isinstance(row[0], int):
            return int(row[0])
    return None

