"""A row the database refuses must not hold back its batch.

`store_isolating` stores a batch in one transaction; when the database
refuses a row of it (a data error: a value out of range, a constraint, an
index row too large), it halves the batch and tries each half, down to the
single readings it refuses, which go to `rejected_payloads` (counted as
`database_refused`) while every other reading is stored. An outage (the
connection lost, the disk full, a lock timeout) is not a refused row: it is
raised, and the caller keeps the whole batch unacknowledged and retries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.cloud.admission import EXCERPT_CHARS, Refusal, clean
from gateway.cloud.database import ReadingsDB
from gateway.config.consumer_config import mask_passwords
from gateway.core.envelope import Envelope, format_ts

# SQLSTATE classes of a row the database will never take: 22 data exception,
# 23 integrity constraint violation, 54 program limit exceeded (an index row too large).
_REFUSED_CLASSES = ("22", "23", "54")


def refused_row(exc: BaseException) -> bool:
    """True when `exc` says the database refuses a row of the batch rather than being down."""
    if isinstance(exc, OverflowError):
        return True  # an integer past 64 bits (sqlite3)
    # The DB-API names both drivers use for a value or a constraint the database refuses
    # (sqlite3: a string or blob too big; psycopg: an integer its adapter cannot send).
    if {"DataError", "IntegrityError"} & {kind.__name__ for kind in type(exc).__mro__}:
        return True
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg's errors carry the server's code
    return isinstance(sqlstate, str) and sqlstate[:2] in _REFUSED_CLASSES


def reason_of(exc: BaseException) -> str:
    """One line for `rejected_payloads.detail` and the log."""
    first = (str(exc).splitlines() or [""])[0]
    code = getattr(exc, "sqlstate", None)
    return clean(mask_passwords(f"{type(exc).__name__}{f' {code}' if code else ''}: {first}"))[:300]


def reading_excerpt(env: Envelope) -> str:
    """The start of a reading as ASCII JSON (whatever its text holds)."""
    body = {"gateway": env.gateway, "epoch": env.epoch, "device": env.device,
            "stream": env.stream, "seq": env.seq, "ts": format_ts(env.ts), "value": env.value,
            "unit": env.unit}
    return json.dumps(body, ensure_ascii=True, default=str)[:EXCERPT_CHARS]


@dataclass
class Stored:
    """What a batch came to once committed."""

    fresh: int = 0
    duplicates: int = 0
    rejects: Counter[str] = field(default_factory=Counter)  # every count committed
    skipped: list[tuple[str, Envelope]] = field(default_factory=list)  # (reason, reading)
    refused: list[tuple[Envelope, str]] = field(default_factory=list)  # by the database


def store_isolating(db: ReadingsDB, readings: list[Envelope], rejects: Counter[str],
                    refused: Sequence[Refusal], topic_of: Callable[[Envelope], str]) -> Stored:
    """Store a batch, isolating the rows the database refuses (see the module).

    Raises:
        Exception: the driver's error when the database is down rather than refusing a row.
    """
    result = Stored()
    _store(db, readings, Counter(rejects), refused, topic_of, result)
    return result


def _store(db: ReadingsDB, readings: list[Envelope], rejects: Counter[str],
           refused: Sequence[Refusal], topic_of: Callable[[Envelope], str],
           result: Stored) -> None:
    counts = Counter(rejects)
    skipped: list[tuple[str, Envelope]] = []
    try:
        fresh, duplicates = db.store_batch(readings, counts, refused, skipped)
    except Exception as exc:
        if not readings or not refused_row(exc):
            raise
        if len(readings) > 1:
            half = len(readings) // 2
            _store(db, readings[:half], rejects, refused, topic_of, result)
            _store(db, readings[half:], Counter(), (), topic_of, result)
            return
        env, reason = readings[0], reason_of(exc)
        counts["database_refused"] += 1
        db.store_refused([*refused, Refusal(topic_of(env)[:512], "database_refused", reason,
                                            reading_excerpt(env))], counts)
        result.rejects.update(counts)
        result.skipped.append(("database_refused", env))
        result.refused.append((env, reason))
        return
    result.fresh += fresh
    result.duplicates += duplicates
    result.rejects.update(counts)
    result.skipped.extend(skipped)
