"""`mqtt-gateway status`: what the store holds, readable while the gateway runs.

Reads the outbox with its own SQLite connection (WAL lets a reader work
beside the writer) and never creates a store that is not there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.config.gateway_config import GatewayConfig
from gateway.core.delivery import DeliveryClass
from gateway.core.errors import MqttGatewayError
from gateway.core.units import format_bytes
from gateway.edge.ingest import SUPPRESSED


def process_alive(pid: int) -> bool:
    """True when a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StatusError(MqttGatewayError):
    """The store cannot be read; the message says why."""


def read_status(config: GatewayConfig, now: float | None = None) -> dict[str, Any]:
    """Everything `status` shows, as plain data.

    Raises:
        StatusError: no store yet, or it cannot be read.
    """
    path = config.store_path
    if not path.exists():
        raise StatusError(f"no store at {path}: the gateway has not run with this config yet")
    now = time.time() if now is None else now
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0)
        try:
            return _collect(conn, config, path, now)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StatusError(f"cannot read the store {path}: {exc}") from exc


def _collect(conn: sqlite3.Connection, config: GatewayConfig, path: Path, now: float
             ) -> dict[str, Any]:
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    runtime = json.loads(meta["runtime"]) if "runtime" in meta else None
    running = bool(runtime and meta.get("clean_stop") == "0" and process_alive(runtime["pid"]))
    backlog = _backlog(conn, now, runtime if running else None)
    epoch = meta.get("epoch")
    streams = _streams(conn, config, epoch)
    drops, drop_rows, suppressed = _drops(conn)
    quarantined_by_reason = dict(conn.execute(
        "SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY reason").fetchall())
    return {
        "confirmation": _confirmation(conn, config, now),
        "gateway": config.gateway_id,
        "store": str(path),
        "epoch": epoch,
        "running": running,
        "last_stop_clean": meta.get("clean_stop") == "1",
        "store_recovered": int(meta.get("store_recovered") or 0),
        "runtime": runtime if running else None,
        "backlog": backlog,
        "quarantined": sum(quarantined_by_reason.values()),
        "quarantined_by_reason": quarantined_by_reason,
        "streams": streams,
        "drops": drops,
        "drops_detail": drop_rows,
        "suppressed": suppressed,
        "store_bytes": _store_bytes(conn, config, path),
    }


def _backlog(conn: sqlite3.Connection, now: float, runtime: dict[str, Any] | None
             ) -> dict[str, dict[str, Any]]:
    """Pending readings and the age of the oldest, by delivery class; at-most-once from the
    running process's snapshot (`runtime`, None when no process runs), as it is not stored."""
    backlog: dict[str, dict[str, Any]] = {
        d.value: {"pending": 0, "oldest_age_s": None} for d in DeliveryClass}
    for qos, count, oldest in conn.execute(
        "SELECT qos, count(*), min(ts) FROM outbox GROUP BY qos"
    ):
        backlog[DeliveryClass.from_qos(qos).value] = {
            "pending": count, "oldest_age_s": round(now - oldest, 3)}
    if runtime is not None:
        backlog[DeliveryClass.AT_MOST_ONCE.value]["pending"] = runtime["at_most_once_queued"]
    return backlog


def _streams(conn: sqlite3.Connection, config: GatewayConfig, epoch: str | None
             ) -> list[dict[str, Any]]:
    """Each configured stream with its last seq in this epoch and its pending readings."""
    pending_by_stream = {
        (d, s): n for d, s, n in conn.execute(
            "SELECT device, stream, count(*) FROM outbox GROUP BY device, stream")
    }
    last_seqs = {
        (d, s): seq for d, s, seq in conn.execute(
            "SELECT device, stream, last_seq FROM sequences WHERE epoch = ?", (epoch,))
    }
    return [
        {"device": d.id, "stream": s.name, "delivery": s.delivery.value,
         "last_seq": last_seqs.get((d.id, s.name), 0),
         "pending": pending_by_stream.get((d.id, s.name), 0)}
        for d in config.devices for s in d.streams
    ]


def _drops(conn: sqlite3.Connection
           ) -> tuple[dict[str, int], list[dict[str, Any]], dict[str, int]]:
    """Drops by reason, each drop counter, and the readings report by exception held back
    (device/stream -> count), which are not drops."""
    drops: dict[str, int] = {}
    drop_rows = []
    suppressed: dict[str, int] = {}
    for reason, device, stream, count in conn.execute(
        "SELECT reason, device, stream, count FROM drops ORDER BY reason, device, stream"
    ):
        if reason == SUPPRESSED:
            suppressed[f"{device}/{stream}"] = count
            continue
        drops[reason] = drops.get(reason, 0) + count
        drop_rows.append({"reason": reason, "device": device, "stream": stream, "count": count})
    return drops, drop_rows, suppressed


def _store_bytes(conn: sqlite3.Connection, config: GatewayConfig, path: Path) -> dict[str, int]:
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    live = (conn.execute("PRAGMA page_count").fetchone()[0]
            - conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
    wal = Path(f"{path}-wal")
    return {
        "live": live,
        "file": path.stat().st_size,
        "wal": wal.stat().st_size if wal.exists() else 0,
        "max": config.store.max_bytes,
    }


def _confirmation(conn: sqlite3.Connection, config: GatewayConfig, now: float) -> dict[str, Any]:
    """Rows the broker acknowledged that wait for the consumer's confirmation."""
    waiting, oldest = conn.execute(
        "SELECT count(*), min(acked_at) FROM outbox WHERE acked_at IS NOT NULL").fetchone()
    return {"mode": config.confirmation, "waiting": waiting,
            "oldest_wait_s": None if oldest is None else round(max(0.0, now - oldest), 3)}


def render_status(report: dict[str, Any]) -> str:
    """The human-readable form of `read_status()`."""
    lines = [f"gateway {report['gateway']}   store {report['store']}",
             f"epoch   {report['epoch']}"]
    runtime = report["runtime"]
    if runtime:
        age = time.time() - runtime["updated_at"]
        broker = "connected" if runtime["broker_connected"] else "NOT connected"
        lines.append(f"process running (pid {runtime['pid']}, snapshot {age:.0f}s old); "
                     f"broker {runtime['broker']} {broker}; in flight {runtime['in_flight']}")
        if "confirmations_accepted" in runtime:
            ignored = sum(runtime["confirmations_ignored"].values())
            lines.append(f"end-to-end confirmation: {runtime['confirmations_accepted']} marks "
                         f"accepted, {ignored} ignored, {runtime['resent_unconfirmed']} "
                         "readings resent for want of one")
            if runtime.get("consumer_absent"):
                lines.append(f"NO CONSUMER IS CONFIRMING (silent for "
                             f"{runtime['confirmation_silent_s']:.0f}s): run `mqtt-gateway "
                             "consume`, or set `confirmation: broker`")
    else:
        lines.append("process not running; last stop was "
                     + ("clean" if report["last_stop_clean"] else "NOT clean (a new epoch "
                        "starts at the next run)"))
    if runtime and runtime.get("store_disk_full"):
        lines.append("DISK FULL: new durable readings are dropped and counted (disk_full); "
                     "stored ones are still sent")
    if report["store_recovered"]:
        lines.append(f"store recovered from corruption {report['store_recovered']} time(s): "
                     "the damaged file was moved aside as *.corrupt-*")
    confirmation = report["confirmation"]
    if confirmation["waiting"]:
        lines.append(f"waiting for the consumer's confirmation: {confirmation['waiting']} "
                     f"readings, the oldest for {confirmation['oldest_wait_s']:.1f}s")
    lines.append("backlog:")
    for name, item in report["backlog"].items():
        oldest = item["oldest_age_s"]
        age = f", oldest {oldest:.1f}s old" if oldest is not None else ""
        where = "in memory" if name == DeliveryClass.AT_MOST_ONCE.value else "stored"
        lines.append(f"  {name:<14} {item['pending']:>8} {where}{age}")
    reasons = "".join(f"\n  {n:>8} {reason}"
                      for reason, n in report["quarantined_by_reason"].items())
    lines.append(f"quarantined: {report['quarantined']}{reasons}")
    lines.append("streams:")
    for s in report["streams"]:
        lines.append(f"  {s['device']}/{s['stream']:<20} {s['delivery']:<14} "
                     f"last seq {s['last_seq']:>8}  pending {s['pending']}")
    drops = report["drops"]
    lines.append("drops: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"))
    if report["suppressed"]:
        lines.append("suppressed by report by exception (not lost): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(report["suppressed"].items())))
    size = report["store_bytes"]
    lines.append(f"store size: {format_bytes(size['live'])} live of {format_bytes(size['max'])} "
                 f"max (file {format_bytes(size['file'])}, wal {format_bytes(size['wal'])})")
    return "\n".join(lines)


def summary_figures(figures: tuple[int, ...], dropped_by: Counter[str]) -> str:
    """The counts of the summary line: (read, stored, acknowledged, at-most-once sent,
    dropped, suppressed), the drops by reason; suppressed apart (not a loss)."""
    read, stored, acknowledged, sent, dropped, suppressed = figures
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(dropped_by.items()) if n)
    return (f"read {read}, stored {stored}, acknowledged {acknowledged}, at-most-once sent "
            f"{sent}, dropped {dropped}{f', suppressed {suppressed}' if suppressed else ''}"
            f"{f'; drops by reason: {reasons}' if reasons else ''}")
