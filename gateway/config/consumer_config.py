"""The consumer's YAML config (docs/contracts.md, "Consumer config"), parsed into typed objects."""

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
from gateway.config.credentials import (
    BrokerCredentials,
    NamedFile,
    read_credentials,
    read_named_file,
)
from gateway.config.reader import MapReader, describe
from gateway.core.redact import has_url_password, mask_secrets
from gateway.core.topics import READING_TOPIC_DEFAULT, ReadingTopic

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


# A libpq keyword=value string (`host=db password=...`): not a file name, and not accepted.
_DSN_KEYWORD = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|service|options|"
    r"connect_timeout|application_name|target_session_attrs)\s*=", re.IGNORECASE)
DSN_HINT = ("write it as a URL, postgresql://user@host:5432/dbname, with the password in a "
            "file named by database_password_file")


def database_problem(database: str) -> str | None:
    """Why `database` cannot name a database, or None."""
    if not database.strip():
        return "it is empty"
    if not is_postgres_url(database) and _DSN_KEYWORD.search(database):
        return f"a libpq key=value string is not accepted (nor taken for a file name); {DSN_HINT}"
    if is_postgres_url(database):
        try:
            import psycopg  # noqa: PLC0415 - only for PostgreSQL URLs: it costs the gateway ~12 MB of RSS
        except ImportError:
            return None  # the URL is read by psycopg; `check` and `consume` name the missing extra
        try:
            psycopg.conninfo.conninfo_to_dict(database)
        except psycopg.ProgrammingError as exc:
            # psycopg quotes the token it stumbled on, which may be a piece of the password.
            why = re.sub(r'"[^"]*"', "(a token)", str(exc).splitlines()[0])
            return (f"not a valid PostgreSQL URL ({mask_passwords(why)}); a password holding "
                    "@ : / % must be percent-encoded, or put in database_password_file")
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
    topics: ReadingTopic = field(default_factory=lambda: ReadingTopic.compile(
        READING_TOPIC_DEFAULT))  # which identity a reading's topic names
    max_payload: int = 256 * 1024  # bytes of one payload, checked before decoding
    max_seq_jump: int = 1_000_000  # seqs a reading may lie beyond its stream's max_seq
    database_password_file: NamedFile | None = None  # the PostgreSQL password, in a file

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
    """`text` with every password in it replaced by `***` (for logs): `mask_secrets`."""
    return mask_secrets(text)


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


_TEMPLATE_EXPECTED = ("a topic template such as gw/{gateway}/{device}/{stream} (the gateways' "
                      "topic_prefix followed by /{device}/{stream})")


def _read_topics(broker: MapReader) -> ReadingTopic | None:
    template = broker.string("topic_template", default=READING_TOPIC_DEFAULT,
                             expected=_TEMPLATE_EXPECTED)
    if template is None:
        return None
    try:
        return ReadingTopic.compile(template)
    except ValueError as exc:
        broker.problem("topic_template", _TEMPLATE_EXPECTED, describe(template), str(exc))
        return None


def _read(root: MapReader, path: Path) -> ConsumerConfig | None:
    broker = root.mapping("broker", required=True)
    endpoints = client_id = subscribe = topics = None
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
        topics = _read_topics(broker)
        credentials = read_credentials(
            broker, endpoints is not None and any(a.tls for a in endpoints.addresses),
            next((a.host for a in endpoints.addresses if not a.tls), None)
            if endpoints is not None else None)
        broker.finish()
    database = root.string("database", default="./consumer.sqlite",
                           expected="a SQLite file path or a postgresql:// URL")
    if database is not None and (problem := database_problem(database)) is not None:
        root.problem("database", "a SQLite file path or a postgresql:// URL",
                     repr(mask_passwords(database)), problem)
        database = None
    password_file = _read_password_file(root, database)
    interval = root.duration("commit_interval", default=0.1, minimum=0.001, maximum=60.0)
    batch = root.integer("commit_batch", default=500, minimum=1, maximum=100_000)
    summary = root.duration("summary_interval", default=10.0, minimum=1.0)
    metrics = read_metrics(root)
    max_payload = root.size("max_payload", default=256 * 1024, minimum=256,
                            maximum=256 * 1024 * 1024)
    jump = root.integer("max_seq_jump", default=1_000_000, minimum=1, maximum=2**62)
    if endpoints is None or client_id is None or subscribe is None or database is None \
            or batch is None or topics is None or jump is None:
        return None
    return ConsumerConfig(path, endpoints, client_id, subscribe, int(keepalive), int(expiry),
                          database, interval, batch, summary, credentials, metrics, topics,
                          max_payload, jump, password_file)


def _read_password_file(root: MapReader, database: str | None) -> NamedFile | None:
    """`database_password_file`: only with a postgresql:// URL that holds no password."""
    named = read_named_file(root, "database_password_file")
    if named is None or database is None:
        return named
    if not is_postgres_url(database):
        root.problem("database_password_file", "a password file only with a postgresql:// "
                     "database", named.name, "a SQLite database has no password")
        return None
    if has_url_password(database):
        root.problem("database", "a postgresql:// URL without a password when "
                     "database_password_file is set", describe(database),
                     "take the password out of the URL")
        return None
    return named
