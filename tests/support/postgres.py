"""A schema of its own on the real PostgreSQL server, for one test or one benchmark run."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def own_schema(prefix: str = "t") -> Iterator[str]:
    """Create a fresh schema and yield the URL that makes it the search path; dropped after.

    Raises:
        psycopg.OperationalError: the server at PG_URL does not answer.
    """
    import psycopg  # noqa: PLC0415 - the consumer's PostgreSQL extra, only where it is used

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
