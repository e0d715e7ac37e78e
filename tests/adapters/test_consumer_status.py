"""`mqtt-gateway status --config CONSUMER.yaml` on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from gateway.cloud.database import open_readings_db
from gateway.core.envelope import Envelope
from tests.support.rig import run_cli

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_780_000_000.0

CONSUMER = """\
version: 1
broker:
  url: mqtt://127.0.0.1:1
  client_id: status-test
  subscribe: gw/#
database: {database}
"""


def env(seq: int, stream: str = "temperature", gateway: str = "gw-1") -> Envelope:
    return Envelope(gateway, "E1", "climate", stream, seq, T0 + seq, 21.5, "°C")


def _fill(database: str) -> None:
    db = open_readings_db(database)
    try:
        db.store_batch([env(196), env(197), env(199), env(1, "alarm")], Counter({"bad_json": 2}))
        db.store_batch([env(197), env(2, "alarm"), env(5, gateway="gw-2")], Counter())
        # Seqs 2 and 3 dropped on purpose by the gateway (expired), told in seq 4's envelope.
        db.store_batch([env(1, "pressure"), replace(env(4, "pressure"), dropped=(2, 3))],
                       Counter())
    finally:
        db.close()


def _status(tmp_path: Path, database: str, *extra: str) -> tuple[int, str, str]:
    config = tmp_path / "consumer.yaml"
    config.write_text(CONSUMER.format(database=database))
    done = run_cli("status", "--config", str(config), *extra, cwd=tmp_path)
    return done.returncode, done.stdout, done.stderr


def _check_report(report: dict[str, object]) -> None:
    streams = {(s["gateway"], s["stream"]): s for s in report["streams"]}  # type: ignore[attr-defined, index]
    temp = streams[("gw-1", "temperature")]
    assert (temp["first_seq"], temp["max_seq"], temp["received"], temp["duplicates"],
            temp["gaps"]) == (196, 199, 3, 1, 1)
    assert temp["last_seen"] and temp["lag_s"] is not None
    alarm = streams[("gw-1", "alarm")]
    assert (alarm["first_seq"], alarm["received"], alarm["gaps"]) == (1, 2, 0)
    assert streams[("gw-2", "temperature")]["first_seq"] == 5, "first contact is not 4 gaps"
    assert report["gateways"] == ["gw-1", "gw-2"]
    pressure = streams[("gw-1", "pressure")]
    assert (pressure["received"], pressure["gaps"], pressure["dropped_by_gateway"]) == (2, 0, 2)
    assert report["totals"] == {"received": 8, "duplicates": 1, "gaps": 1,
                                "dropped_by_gateway": 2}
    assert report["rejects"] == {"bad_json": 2}


def test_consumer_status_on_sqlite(tmp_path: Path) -> None:
    database = str(tmp_path / "consumer.sqlite")
    _fill(database)
    code, out, err = _status(tmp_path, database, "--json")
    assert code == 0, err
    _check_report(json.loads(out))
    code, text, err = _status(tmp_path, database)
    assert code == 0, err
    assert "unknown key" not in text + err
    assert "gw-1/climate/temperature" in text and "gaps since first contact 1" in text
    assert "dropped by the gateway 2" in text
    assert "rejected payloads: bad_json 2" in text


def test_consumer_status_on_postgresql(tmp_path: Path) -> None:
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} does not answer ({exc})")
    schema = f"t_{secrets.token_hex(6)}"
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            _fill(url)
            code, out, err = _status(tmp_path, url, "--json")
            assert code == 0, err
            _check_report(json.loads(out))
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_consumer_status_without_a_database_says_so(tmp_path: Path) -> None:
    code, _out, err = _status(tmp_path, str(tmp_path / "absent.sqlite"))
    assert code == 1
    assert "no consumer database at" in err and "Traceback" not in err
    assert not (tmp_path / "absent.sqlite").exists()
