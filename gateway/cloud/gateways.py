"""The consumer's `gateways` table: the latest online status of each gateway.

One row per gateway, replaced by each `{topic_prefix}/_status` message the consumer
receives (gateway/core/presence.py): state, epoch, since, version, devices (JSON text),
reason and when the consumer stored it. The same SQL for SQLite and PostgreSQL, but
for the parameter mark and the time column types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from gateway.core.envelope import format_ts
from gateway.core.presence import GatewayStatus

SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY, state TEXT NOT NULL, epoch TEXT NOT NULL, since TEXT NOT NULL,
    version TEXT NOT NULL, devices TEXT NOT NULL, reason TEXT, updated_at TEXT NOT NULL)"""
POSTGRES_TABLE = """CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY, state TEXT NOT NULL, epoch TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL, version TEXT NOT NULL, devices TEXT NOT NULL, reason TEXT,
    updated_at TIMESTAMPTZ NOT NULL)"""
QUERY = ("SELECT gateway, state, epoch, since, version, devices, reason, updated_at "
         "FROM gateways ORDER BY gateway")
_UPSERT = ("INSERT INTO gateways(gateway, state, epoch, since, version, devices, reason, "
           "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(gateway) DO UPDATE SET "
           "state = excluded.state, epoch = excluded.epoch, since = excluded.since, "
           "version = excluded.version, devices = excluded.devices, reason = excluded.reason, "
           "updated_at = excluded.updated_at")


def upsert_statuses(execute: Callable[[str, Sequence[Any]], Any], mark: str,
                    statuses: list[GatewayStatus], now: float) -> None:
    """Replace each gateway's row by its status, inside the caller's transaction."""
    sql = _UPSERT if mark == "?" else _UPSERT.replace("?", mark)
    for s in statuses:
        execute(sql, (s.gateway, s.state, s.epoch, format_ts(s.since), s.version,
                      json.dumps(s.devices, sort_keys=True), s.reason, format_ts(now)))
