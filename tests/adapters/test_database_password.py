"""The consumer's PostgreSQL password from `database_password_file`, on the real server
(trust auth: the password is sent and not needed, so this checks the way it goes)."""

from __future__ import annotations

import secrets

import psycopg

from gateway.cloud.database import conninfo, open_readings_db, read_gaps
from gateway.core.redact import mask_secrets
from tests.adapters.test_consumer_db import PG_URL

PASSWORD = "p@ss:w/o%rd 'quoted'"


def test_a_password_from_a_file_goes_to_postgresql_and_never_into_text() -> None:
    schema = f"t_{secrets.token_hex(6)}"
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            info = conninfo(url, PASSWORD)
            assert psycopg.conninfo.conninfo_to_dict(info)["password"] == PASSWORD
            assert "p@ss" not in mask_secrets(info) and "w/o%rd" not in mask_secrets(info)
            db = open_readings_db(url, PASSWORD)
            db.close()
            assert read_gaps(url, PASSWORD) == 0
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
