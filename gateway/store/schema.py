"""The outbox's SQLite schema.

Tables:
- `meta`: key/value facts about the store (schema version, gateway id,
  current epoch, whether the last stop was clean, the runtime snapshot).
- `sequences`: last seq handed out per `(epoch, device, stream)`.
- `outbox`: durable readings waiting for the broker's PUBACK/PUBCOMP. The
  id orders them and is never a reading's identity. `mono` and `boot` are set
  only for readings taken before the system clock was synchronised
  (`gateway.core.clock`): their monotonic time and the boot it counts in.
- `quarantine`: readings the broker rejected, kept for the operator.
- `drop_notices`: per stream, the seqs dropped on purpose (expired, evicted)
  that no acknowledged envelope has told the consumer of yet (`dropping.py`).
- `drops`: readings dropped anywhere, counted by reason, device and stream
  (`DropKey`).

Reading rows back out of a damaged store is `store_salvage.py`.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3

DropKey = tuple[str, str, str]  # a row of `drops`: (reason, device, stream)

# Columns added after version 1 (end-to-end confirmation): whether a row waits
# for the consumer's confirmation, when the broker acknowledged it, and how
# often it was sent again for want of a confirmation.
_V2_COLUMNS = (
    ("confirm", "INTEGER NOT NULL DEFAULT 0"),
    ("acked_at", "REAL"),
    ("resends", "INTEGER NOT NULL DEFAULT 0"),
)
# Added in version 3 (clocks without an RTC): NULL for readings taken on a synchronised clock.
_V3_COLUMNS = (("mono", "REAL"), ("boot", "TEXT"))


# The same tables sqlite-utils created for stores made before 0.3.0; plain SQL keeps
# sqlite-utils (~4 MB of RSS) out of the running gateway.
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sequences (
    epoch TEXT, device TEXT, stream TEXT, last_seq INTEGER NOT NULL,
    PRIMARY KEY (epoch, device, stream));
-- AUTOINCREMENT: ids only grow, even after the table empties, so the
-- publisher's "rows after id N" cursor never skips a new row.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch TEXT NOT NULL, device TEXT NOT NULL, stream TEXT NOT NULL,
    seq INTEGER NOT NULL, qos INTEGER NOT NULL, ts REAL NOT NULL,
    topic TEXT NOT NULL, payload BLOB NOT NULL,
    confirm INTEGER NOT NULL DEFAULT 0, acked_at REAL,
    resends INTEGER NOT NULL DEFAULT 0, mono REAL, boot TEXT);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, epoch TEXT, device TEXT, stream TEXT, seq INTEGER, qos INTEGER,
    topic TEXT, payload BLOB, reason TEXT, quarantined_at REAL);
CREATE TABLE IF NOT EXISTS drop_notices (
    epoch TEXT, device TEXT, stream TEXT, first INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (epoch, device, stream));
CREATE TABLE IF NOT EXISTS drops (
    reason TEXT, device TEXT, stream TEXT, count INTEGER NOT NULL,
    PRIMARY KEY (reason, device, stream));
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables that do not exist yet."""
    for statement in _TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
    )
    migrate(conn)
    # The resend scan of end-to-end confirmation looks only at held rows.
    conn.execute("CREATE INDEX IF NOT EXISTS outbox_held ON outbox(acked_at) "
                 "WHERE acked_at IS NOT NULL")
    # A confirmation's range finds its rows through this one instead of a scan of the
    # whole outbox per range (docs/security.md: what each protection costs).
    conn.execute("CREATE INDEX IF NOT EXISTS outbox_confirm ON outbox(device, stream, seq) "
                 "WHERE confirm = 1")


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a version 1 or 2 store to the current schema (nullable or defaulted columns
    only: every row stays as it was)."""
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if version is None or version[0] not in ("1", "2"):
        return
    present = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    for name, kind in (*_V2_COLUMNS, *_V3_COLUMNS):
        if name not in present:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
