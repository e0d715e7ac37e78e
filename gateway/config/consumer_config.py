"""The consumer's YAML config (DESIGN.md section 3.4), parsed into typed objects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.common import (
    CLIENT_ID,
    BrokerAddress,
    BrokerEndpoints,
    ConfigError,
    ListenAddress,
    read_broker_endpoints,
    read_metrics,
    read_root,
)
from gateway.config.credentials import BrokerCredentials, read_credentials
from gateway.config.reader import MapReader, describe

_FILTER_EXPECTED = "an MQTT topic filter such as gw/# ('+' and '#' only as whole levels, '#' last)"


def filter_problem(text: str) -> str | None:
    """Why `text` is not a valid subscription filter, or None."""
    if not text or "\x00" in text:
        return "it is empty or contains NUL"
    levels = text.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def is_postgres_url(database: str) -> bool:
    """True when a `database:` setting names PostgreSQL rather than a SQLite file."""
    return database.startswith(("postgresql://", "postgres://"))


def database_problem(database: str) -> str | None:
    """Why `database` cannot name a database, or None."""
    if not database.strip():
        return "it is empty"
    if is_postgres_url(database):
        try:
            import psycopg  # noqa: PLC0415 - only for PostgreSQL URLs: it costs the gateway ~12 MB of RSS
        except ImportError:
            return None  # the URL is read by psycopg; `check` and `consume` name the missing extra
        try:
            psycopg.conninfo.conninfo_to_dict(database)
        except psycopg.ProgrammingError as exc:
            return f"not a valid PostgreSQL URL ({mask_passwords(str(exc).splitlines()[0])})"
    return None


@dataclass(frozen=True)
class ConsumerConfig:
    """A whole, validated consumer config."""

    path: Path
    endpoints: BrokerEndpoints
    client_id: str
    subscribe: str
    keepalive: int
    session_expiry: int
    database: str
    commit_interval: float
    commit_batch: int
    summary_interval: float
    credentials: BrokerCredentials = field(default_factory=BrokerCredentials)
    metrics: ListenAddress | None = None  # the Prometheus endpoint; off when None

    @property
    def address(self) -> BrokerAddress:
        """The first broker URL."""
        return self.endpoints.addresses[0]

    @property
    def is_postgres(self) -> bool:
        """True when `database` is a PostgreSQL URL."""
        return is_postgres_url(self.database)

    @property
    def database_label(self) -> str:
        """The database for logs, without any password in it."""
        return mask_passwords(self.database) if self.is_postgres else self.database


def mask_passwords(text: str) -> str:
    """`text` with the password of any URL in it replaced by `***` (for logs)."""
    # The user name may be empty, and libpq also takes `?password=...`.
    masked = re.sub(r"//([^:/@\s]*):[^@\s]*@", r"//\1:***@", text)
    return re.sub(r"([?&]password=)[^&\s\"']*", r"\1***", masked)


def load_consumer_config(path: Path) -> ConsumerConfig:
    """Read and validate a consumer config file.

    Raises:
        ConfigError: listing every problem in the file.
    """
    root, problems = read_root(path)
    if root is None:
        raise ConfigError(problems)
    config = _read(root, path)
    root.finish()
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _read(root: MapReader, path: Path) -> ConsumerConfig | None:
    broker = root.mapping("broker", required=True)
    endpoints = client_id = subscribe = None
    keepalive, expiry = 30.0, 7 * 24 * 3600.0
    credentials = BrokerCredentials()
    if broker is not None:
        endpoints = read_broker_endpoints(broker)
        client_id = broker.string("client_id", required=True, pattern=CLIENT_ID,
                                  expected="1-128 letters, digits or '_.:-' (stable across restarts)")
        subscribe = broker.string("subscribe", default="gw/#", expected=_FILTER_EXPECTED)
        if subscribe is not None and (problem := filter_problem(subscribe)) is not None:
            broker.problem("subscribe", _FILTER_EXPECTED, describe(subscribe), problem)
            subscribe = None
        keepalive = broker.duration("keepalive", default=30.0, minimum=5.0, maximum=3600.0)
        expiry = broker.duration("session_expiry", default=expiry, minimum=60.0,
                                 maximum=4294967295.0)
        credentials = read_credentials(
            broker, endpoints is not None and any(a.tls for a in endpoints.addresses))
        broker.finish()
    database = root.string("database", default="./consumer.sqlite",
                           expected="a SQLite file path or a postgresql:// URL")
    if database is not None and (problem := database_problem(database)) is not None:
        root.problem("database", "a SQLite file path or a postgresql:// URL",
                     repr(mask_passwords(database)), problem)
        database = None
    interval = root.duration("commit_interval", default=0.1, minimum=0.001, maximum=60.0)
    batch = root.integer("commit_batch", default=500, minimum=1, maximum=100_000)
    summary = root.duration("summary_interval", default=10.0, minimum=1.0)
    metrics = read_metrics(root)
    if endpoints is None or client_id is None or subscribe is None or database is None \
            or batch is None:
        return None
    return ConsumerConfig(path, endpoints, client_id, subscribe, int(keepalive), int(expiry),
                          database, interval, batch, summary, credentials, metrics)
