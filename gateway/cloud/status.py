"""`mqtt-gateway status --config CONSUMER.yaml`: what the consumer has stored, per stream.

Read through a short read-only connection of its own, so it works while the
consumer runs. Per gateway and stream: the epoch last seen and its first seq
(first contact: gaps are counted from it), the highest seq, readings
received, duplicates dropped and gaps since first contact (summed over the
stream's epochs), when the stream was last committed and its lag then (the
newest reading's age at that commit).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.cloud import gateways as gateways_table
from gateway.cloud.database import conninfo
from gateway.config.consumer_config import ConsumerConfig, is_postgres_url
from gateway.core.errors import MqttGatewayError

_COUNTERS = ("SELECT gateway, epoch, device, stream, first_seq, max_seq, received, duplicates, "
             "gaps, last_seen, lag_s, dropped_by_gateway FROM stream_counters "
             "ORDER BY gateway, device, stream, last_seen")


class ConsumerStatusError(MqttGatewayError):
    """The consumer's database cannot be read; the message says which and why."""


def read_consumer_status(config: ConsumerConfig, password: str | None = None) -> dict[str, Any]:
    """Everything `status` shows of a consumer, as plain data.

    Raises:
        ConsumerStatusError: the database does not exist or cannot be read.
    """
    try:
        counters, rejects, presence = _query(config.database, password)
    except ConsumerStatusError:
        raise
    except Exception as exc:
        raise ConsumerStatusError(f"cannot read the consumer database {config.database_label}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    streams: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (gateway, epoch, device, stream, first, high, received, dups, gaps, seen, lag,
         on_purpose) in counters:
        entry = streams.setdefault((gateway, device, stream), {
            "gateway": gateway, "device": device, "stream": stream, "epochs": 0,
            "received": 0, "duplicates": 0, "gaps": 0, "dropped_by_gateway": 0})
        entry["dropped_by_gateway"] += int(on_purpose)
        entry["epochs"] += 1
        entry["received"] += int(received)
        entry["duplicates"] += int(dups)
        entry["gaps"] += int(gaps)
        # Rows come in last_seen order: the last one is the epoch seen most recently.
        entry.update(epoch=epoch, first_seq=int(first), max_seq=int(high),
                     last_seen=_text(seen), lag_s=None if lag is None else round(float(lag), 3))
    items = list(streams.values())
    return {
        "database": config.database_label,
        "subscribe": config.subscribe,
        "gateways": sorted({s["gateway"] for s in items}),
        "streams": items,
        "totals": {key: sum(s[key] for s in items)
                   for key in ("received", "duplicates", "gaps", "dropped_by_gateway")},
        "rejects": dict(sorted(rejects)),
        "presence": [
            {"gateway": g, "state": state, "epoch": epoch, "since": _text(since),
             "version": version, "devices": json.loads(devices), "reason": reason,
             "updated_at": _text(updated)}
            for g, state, epoch, since, version, devices, reason, updated in presence],
    }


Rows = list[tuple[Any, ...]]


def _query(database: str, password: str | None) -> tuple[Rows, Rows, Rows]:
    """stream_counters, consumer_rejects and gateways rows (none in a database written
    before the gateways table existed)."""
    if is_postgres_url(database):
        import psycopg  # noqa: PLC0415 - only with PostgreSQL

        with psycopg.connect(conninfo(database, password), connect_timeout=5) as pg:
            has = pg.execute("SELECT to_regclass('gateways') IS NOT NULL").fetchone()
            return (pg.execute(_COUNTERS).fetchall(),
                    pg.execute("SELECT reason, count FROM consumer_rejects").fetchall(),
                    pg.execute(gateways_table.QUERY).fetchall() if has and has[0] else [])
    if not Path(database).is_file():
        raise ConsumerStatusError(f"no consumer database at {database}: has `mqtt-gateway "
                                  "consume` run with this config?")
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5.0)) as conn:
        has = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'gateways'").fetchone()[0]
        return (conn.execute(_COUNTERS).fetchall(),
                conn.execute("SELECT reason, count FROM consumer_rejects").fetchall(),
                conn.execute(gateways_table.QUERY).fetchall() if has else [])


def _text(value: Any) -> str | None:
    """A stored time as text: SQLite keeps RFC 3339 text, PostgreSQL a timestamptz."""
    if isinstance(value, datetime):
        return value.isoformat()
    return None if value is None else str(value)


def render_consumer_status(report: dict[str, Any]) -> str:
    """The human-readable form of `read_consumer_status()`."""
    totals = report["totals"]
    lines = [f"consumer database {report['database']}   subscribe {report['subscribe']}",
             f"gateways {len(report['gateways'])}, streams {len(report['streams'])}: received "
             f"{totals['received']}, duplicates dropped {totals['duplicates']}, gaps since first "
             f"contact {totals['gaps']}, dropped by the gateway {totals['dropped_by_gateway']}"]
    if report["streams"]:
        lines.append(f"  {'gateway/device/stream':<40} {'first':>8} {'max':>8} {'received':>9} "
                     f"{'dups':>6} {'gaps':>6}  last seen (lag)")
    for s in report["streams"]:
        lag = f" (lag {s['lag_s']:.1f}s)" if s["lag_s"] is not None else ""
        epochs = f", {s['epochs']} epochs" if s["epochs"] > 1 else ""
        name = f"{s['gateway']}/{s['device']}/{s['stream']}"
        lines.append(f"  {name:<40} {s['first_seq']:>8} {s['max_seq']:>8} {s['received']:>9} "
                     f"{s['duplicates']:>6} {s['gaps']:>6}  {s['last_seen'] or '-'}{lag}{epochs}")
    if report["presence"]:
        lines.append("gateway status (their retained _status messages):")
    for g in report["presence"]:
        up = sorted(d for d, state in g["devices"].items() if state == "up")
        down = sorted(d for d, state in g["devices"].items() if state != "up")
        reason = f" ({g['reason']})" if g["reason"] else ""
        lines.append(f"  {g['gateway']:<20} {g['state'].upper()}{reason} since {g['since']}, "
                     f"epoch {g['epoch']}, version {g['version']}; devices up: "
                     f"{', '.join(up) or 'none'}; down: {', '.join(down) or 'none'}; "
                     f"updated {g['updated_at']}")
    rejects = report["rejects"]
    lines.append("rejected payloads: " + (", ".join(f"{k} {v}" for k, v in rejects.items())
                                          or "none"))
    return "\n".join(lines)
