"""One batch's transaction, the same on both backends: bound the seqs, insert the readings,
add the per-stream counters (with the seqs the gateway says it dropped on purpose), the
reject counts and the refused payloads.

Each backend passes its `execute` (runs one statement, returns a cursor), its
`executemany`, its parameter mark, its row lock and how it inserts many readings in one
statement (`bulk`: SQLite a multi-row VALUES, PostgreSQL one array per column through
`unnest`); both skip identities already stored and return the ones they inserted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.cloud.admission import Refusal
from gateway.core.dedup import StreamCounters, StreamId, fold, seq_jumps
from gateway.core.envelope import Envelope, format_ts

KEY = "gateway, epoch, device, stream"
READINGS_COLUMNS = "gateway, epoch, device, stream, seq, ts, value, unit, received_at, ts_quality"
# PostgreSQL's types of those columns, for the arrays `unnest` reads.
_PG_ARRAYS = ("text", "text", "text", "text", "bigint", "timestamptz", "jsonb", "text",
              "timestamptz", "text")
_KEYS_PER_SELECT = 200
_ROWS_PER_VALUES = 500  # 10 parameters a row: within SQLite's 32,766
REJECTED_COLUMNS = "topic, payload, reason, detail, received_at"

Execute = Callable[[str, Sequence[Any]], Any]  # runs one statement, returns a cursor


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends inside a batch's transaction."""

    execute: Execute
    executemany: Callable[[str, Sequence[Sequence[Any]]], Any]
    mark: str  # the driver's parameter mark
    lock: str  # appended to the counters' SELECT
    bulk: str  # "values" (SQLite) or "unnest" (PostgreSQL)

    def q(self, sql: str) -> str:
        """`sql` with the driver's parameter mark."""
        return sql if self.mark == "?" else sql.replace("?", self.mark)

    def run(self, sql: str, args: Sequence[Any]) -> Any:
        """Execute one statement written with '?' marks."""
        return self.execute(self.q(sql), args)


def _select_counters(d: Dialect, keys: list[StreamId], lock: str
                     ) -> dict[StreamId, StreamCounters]:
    stored: dict[StreamId, StreamCounters] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start:start + _KEYS_PER_SELECT]
        values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        cursor = d.run(f"SELECT {KEY}, first_seq, max_seq, received, duplicates, before_first, "
                       "dropped_by_gateway, dropped_upto FROM stream_counters "
                       f"WHERE ({KEY}) IN (VALUES {values}) "
                       f"ORDER BY {KEY}{lock}", [part for key in chunk for part in key])
        for row in cursor.fetchall():
            stored[tuple(row[:4])] = StreamCounters(*(int(n) for n in row[4:]))
    return stored


def _identity(env: Envelope) -> StreamId:
    return (env.gateway, env.epoch, env.device, env.stream)


def insert_readings(d: Dialect, rows: Sequence[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """Insert `readings` rows, skipping identities already stored; the identities
    (gateway, epoch, device, stream, seq) of the rows inserted."""
    inserted: set[tuple[Any, ...]] = set()
    if d.bulk == "unnest":
        if rows:
            arrays = ", ".join(f"?::{kind}[]" for kind in _PG_ARRAYS)
            cursor = d.run(f"INSERT INTO readings({READINGS_COLUMNS}) SELECT * FROM "
                           f"unnest({arrays}) ON CONFLICT DO NOTHING RETURNING {KEY}, seq",
                           [list(column) for column in zip(*rows, strict=True)])
            inserted.update(tuple(row) for row in cursor.fetchall())
        return inserted
    for start in range(0, len(rows), _ROWS_PER_VALUES):
        chunk = rows[start:start + _ROWS_PER_VALUES]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        cursor = d.run(f"INSERT OR IGNORE INTO readings({READINGS_COLUMNS}) VALUES {values} "
                       f"RETURNING {KEY}, seq", [part for row in chunk for part in row])
        inserted.update(tuple(row) for row in cursor.fetchall())
    return inserted


def drop_seq_jumps(d: Dialect, rows: list[tuple[Envelope, tuple[Any, ...]]], bound: int
                   ) -> tuple[list[tuple[Envelope, tuple[Any, ...]]], list[Envelope],
                              dict[StreamId, int | None]]:
    """The rows within `bound` of their stream's max_seq, the readings beyond it, and the
    refused jumps to remember per stream (`seq_jumps`)."""
    keys = sorted({_identity(env) for env, _ in rows})
    stored: dict[StreamId, int] = {}
    jumps: dict[StreamId, int] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start:start + _KEYS_PER_SELECT]
        values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        cursor = d.run(f"SELECT {KEY}, max_seq, jump_seq FROM stream_counters WHERE "
                       f"({KEY}) IN (VALUES {values}) AND first_seq > 0",
                       [part for key in chunk for part in key])
        for *key, high, jump in cursor.fetchall():
            stored[tuple(key)] = int(high)
            if jump is not None:
                jumps[tuple(key)] = int(jump)
    refused, remember = seq_jumps(((_identity(env), env.seq) for env, _ in rows), stored, bound,
                                  jumps)
    kept = [row for position, row in enumerate(rows) if position not in refused]
    return kept, [rows[position][0] for position in sorted(refused)], remember


def update_counters(d: Dialect, outcomes: list[tuple[StreamId, int, bool]],
                    newest: dict[StreamId, float], received_at: float,
                    dropped: dict[StreamId, tuple[int, int]] | None = None) -> None:
    """Add a batch's outcomes to `stream_counters`, inside the caller's transaction.

    One rule for both backends and for concurrent consumers in a shared group:
    each stream's row is created if missing, then read (locked with the dialect's
    lock, in key order, so two members never wait on each other in opposite
    orders), added to in Python (`StreamCounters.plus`) and written back whole.
    `dropped`: the batch's notices of seqs the gateway dropped on purpose (`notices`).
    """
    deltas = fold(outcomes)
    if not deltas:
        return
    keys = sorted(deltas)
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start:start + _KEYS_PER_SELECT]
        values = ", ".join(["(?, ?, ?, ?, 0, 0, 0, 0, 0, 0)"] * len(chunk))
        d.run(f"INSERT INTO stream_counters({KEY}, first_seq, max_seq, received, duplicates, "
              f"gaps, before_first) VALUES {values} ON CONFLICT({KEY}) DO NOTHING",
              [part for key in chunk for part in key])
    stored = _select_counters(d, keys, d.lock)
    seen = format_ts(received_at)
    updates = []
    for key in keys:
        after = stored.get(key, StreamCounters()).plus(deltas[key])
        if dropped and key in dropped:
            after = _count_dropped(d, key, after, dropped[key])
        lag = received_at - newest[key] if key in newest else None
        updates.append((after.first_seq, after.max_seq, after.received, after.duplicates,
                        after.gaps, after.before_first, seen, lag, after.dropped_by_gateway,
                        after.dropped_upto, *key))
    d.executemany(d.q("UPDATE stream_counters SET first_seq = ?, max_seq = ?, received = ?, "
                      "duplicates = ?, gaps = ?, before_first = ?, last_seen = ?, "
                      "lag_s = coalesce(?, lag_s), dropped_by_gateway = ?, dropped_upto = ? "
                      f"WHERE ({KEY}) = (?, ?, ?, ?)"), updates)


def _count_dropped(d: Dialect, key: StreamId, counters: StreamCounters,
                   notice: tuple[int, int]) -> StreamCounters:
    """Count the seqs of a notice's new part that have not arrived (in this transaction)."""
    part = counters.dropped_range(*notice)
    if part is None:
        return counters
    arrived = d.run(f"SELECT count(*) FROM readings WHERE ({KEY}) = (?, ?, ?, ?) "
                    "AND seq BETWEEN ? AND ?", (*key, *part)).fetchone()[0]
    return counters.with_dropped(part[1], part[1] - part[0] + 1 - int(arrived))


def notices(readings: Sequence[Envelope]) -> dict[StreamId, tuple[int, int]]:
    """The `dropped` ranges of a batch, merged per stream."""
    merged: dict[StreamId, tuple[int, int]] = {}
    for env in readings:
        if env.dropped is not None:
            key = _identity(env)
            old = merged.get(key, env.dropped)
            merged[key] = (min(old[0], env.dropped[0]), max(old[1], env.dropped[1]))
    return merged


def newest(readings: Sequence[Envelope]) -> dict[StreamId, float]:
    """The newest reading time per stream of a batch (for the stream's lag)."""
    found: dict[StreamId, float] = {}
    for env in readings:
        key = _identity(env)
        if env.ts > found.get(key, float("-inf")):
            found[key] = env.ts
    return found


def write_batch(d: Dialect, rows: list[tuple[Envelope, tuple[Any, ...]]],
                rejects: Counter[str], refused: Sequence[Refusal], received_at: float,
                max_seq_jump: int) -> tuple[list[tuple[StreamId, int, bool]], list[Envelope]]:
    """The body of a batch's transaction: (stream, seq, fresh) per reading inserted, and the
    readings refused as seq jumps (counted in `rejects`)."""
    rows, jumped, remember = drop_seq_jumps(d, rows, max_seq_jump)
    if jumped:
        rejects["seq_jump"] += len(jumped)
    inserted = insert_readings(d, [row for _, row in rows])
    outcomes: list[tuple[StreamId, int, bool]] = []
    for env, _ in rows:  # a second copy in the same batch is a duplicate
        key = _identity(env)
        full = (*key, env.seq)
        outcomes.append((key, env.seq, full in inserted))
        inserted.discard(full)
    kept = [env for env, _ in rows]
    update_counters(d, outcomes, newest(kept), received_at, notices(kept))
    for key, jump in sorted(remember.items()):
        d.run(f"UPDATE stream_counters SET jump_seq = ? WHERE ({KEY}) = (?, ?, ?, ?)",
              (jump, *key))
    for reason, count in sorted(rejects.items()):
        d.run("INSERT INTO consumer_rejects AS r (reason, count) VALUES (?, ?) "
              "ON CONFLICT (reason) DO UPDATE SET count = r.count + excluded.count",
              (reason, count))
    insert_refused(d, refused, received_at)
    return outcomes, jumped


def insert_refused(d: Dialect, refused: Sequence[Refusal], received_at: float) -> None:
    """Keep the evidence of refused payloads: topic, an excerpt, the reason and its detail."""
    seen = format_ts(received_at)
    for item in refused:
        d.run(f"INSERT INTO rejected_payloads({REJECTED_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
              (item.topic, item.excerpt, item.reason, item.detail[:500], seen))
