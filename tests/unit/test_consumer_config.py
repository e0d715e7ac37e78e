"""The consumer's config (docs/contracts.md, "Consumer config"): defaults, problems, database label."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config.common import BrokerAddress, ConfigError
from gateway.config.consumer_config import (
    ConsumerConfig,
    filter_problem,
    load_consumer_config,
    mask_passwords,
)

FILE = "consumer.yaml"

GOOD = """\
version: 1
broker:
  url: mqtt://127.0.0.1:1883
  client_id: consumer-1
  subscribe: gw/#
database: ./consumer.sqlite
"""


def edit(old: str, new: str) -> str:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


def load(tmp_path: Path, text: str) -> ConsumerConfig:
    path = tmp_path / FILE
    path.write_text(text, encoding="utf-8")
    return load_consumer_config(path)


def test_good_config_with_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    assert config.address == BrokerAddress("127.0.0.1", 1883, tls=False)
    assert config.client_id == "consumer-1"
    assert config.subscribe == "gw/#"
    assert config.database == "./consumer.sqlite"
    assert not config.is_postgres
    assert config.database_label == "./consumer.sqlite"
    assert (config.keepalive, config.session_expiry) == (30, 7 * 24 * 3600)
    assert (config.commit_interval, config.commit_batch) == (0.1, 500)


def test_good_config_with_every_key(tmp_path: Path) -> None:
    config = load(tmp_path, """\
version: 1
broker:
  url: mqtts://broker.example
  client_id: cloud.consumer:1
  subscribe: gw/+/climate/#
  keepalive: 1m
  session_expiry: 24h
database: postgresql://ingest:s3cret@db.example:5432/readings
commit_interval: 50ms
commit_batch: 2000
summary_interval: 30s
""")
    assert config.address == BrokerAddress("broker.example", 8883, tls=True)
    assert config.subscribe == "gw/+/climate/#"
    assert (config.keepalive, config.session_expiry) == (60, 86400)
    assert config.is_postgres
    assert (config.commit_interval, config.commit_batch, config.summary_interval) == (0.05, 2000, 30.0)


BAD = [
    ("missing-client-id", edit("  client_id: consumer-1\n", ""), 3, "broker.client_id",
     "stable across restarts", "the key is missing", ""),
    ("client-id-with-space", edit("client_id: consumer-1", "client_id: consumer 1"), 4,
     "broker.client_id", "letters, digits", "'consumer 1'", ""),
    ("hash-not-last", edit("gw/#", "gw/#/x"), 5, "broker.subscribe", "an MQTT topic filter",
     "'gw/#/x'", "'#' must be a whole level and the last one"),
    ("plus-inside-a-level", edit("gw/#", "gw/a+"), 5, "broker.subscribe", "an MQTT topic filter",
     "'gw/a+'", "'+' must be a whole level"),
    ("empty-filter", edit("gw/#", "''"), 5, "broker.subscribe", "an MQTT topic filter", "''",
     "empty"),
    ("http-url", edit("mqtt://127.0.0.1:1883", "http://127.0.0.1:1883"), 3, "broker.url",
     "mqtt://host:1883", "'http://127.0.0.1:1883'", "the scheme must be mqtt:// or mqtts://"),
    ("url-with-credentials", edit("mqtt://127.0.0.1", "mqtt://u:pw@127.0.0.1"), 3, "broker.url",
     "a URL", "'mqtt://u:***@127.0.0.1:1883'", "credentials"),
    ("unknown-top-level-key", GOOD + "databse: x.sqlite\n", 7, "databse", "known keys",
     "unknown key 'databse'", "did you mean 'database'?"),
    ("unknown-broker-key", edit("  subscribe: gw/#\n", "  subscribe: gw/#\n  subscrib: x\n"), 6,
     "broker.subscrib", "known keys", "unknown key 'subscrib'", "did you mean 'subscribe'?"),
    ("missing-broker", "version: 1\ndatabase: ./c.sqlite\n", 1, "broker", "a mapping",
     "the key is missing", ""),
    ("session-expiry-too-short", edit("  subscribe: gw/#\n", "  subscribe: gw/#\n  session_expiry: 5s\n"),
     6, "broker.session_expiry", "from 60s to 4294967295s", "'5s'", ""),
    ("wrong-version", edit("version: 1", "version: 3"), 1, "version", "1 (the config format",
     "3 (an integer)", ""),
    ("database-not-a-string", edit("./consumer.sqlite", "[a, b]"), 6, "database",
     "a SQLite file path or a postgresql:// URL", "a list", ""),
]


@pytest.mark.parametrize("case", BAD, ids=[case[0] for case in BAD])
def test_bad_consumer_config(tmp_path: Path, case: tuple[str, str, int, str, str, str, str]) -> None:
    _, text, line, path, expected, found, hint = case
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    problems = caught.value.problems
    described = "\n".join(map(str, problems))
    assert len(problems) == 1, described
    [problem] = problems
    assert (problem.file, problem.line, problem.path) == (str(tmp_path / FILE), line, path), described
    assert expected in problem.expected, described
    assert found in problem.found, described
    assert hint in problem.hint, described


@pytest.mark.parametrize("good", ["#", "+", "gw/#", "gw/+/x/+", "gw/greenhouse-01/climate/temperature"])
def test_filter_problem_accepts_valid_filters(good: str) -> None:
    assert filter_problem(good) is None


@pytest.mark.parametrize("bad", ["", "gw/#/x", "gw/a#", "gw/a+", "+a/b", "gw/\x00"])
def test_filter_problem_rejects_invalid_filters(bad: str) -> None:
    assert filter_problem(bad) is not None


@pytest.mark.parametrize(
    ("database", "label"),
    [
        ("postgresql://ingest:s3cret@db:5432/readings", "postgresql://ingest:***@db:5432/readings"),
        ("postgres://ingest:s3cret@db/readings", "postgres://ingest:***@db/readings"),
        ("postgresql://ingest:s3:cr/et@db/readings", "postgresql://ingest:***@db/readings"),
        ("postgresql://:s3cret@db/readings", "postgresql://:***@db/readings"),
        ("postgresql://db/readings?user=ingest&password=s3cret",
         "postgresql://db/readings?user=ingest&password=***"),
        ("postgresql://db/readings?password=s3cret&sslmode=require",
         "postgresql://db/readings?password=***&sslmode=require"),
        ("postgresql://ingest@db/readings", "postgresql://ingest@db/readings"),
        ("./consumer.sqlite", "./consumer.sqlite"),
    ],
    ids=["user-and-password", "postgres-scheme", "password-with-colon-and-slash", "no-user-name",
         "password-in-query", "password-first-in-query", "no-password", "sqlite-file"],
)
def test_database_label_hides_the_password(tmp_path: Path, database: str, label: str) -> None:
    config = replace(load(tmp_path, GOOD), database=database)
    assert config.database_label == label
    assert "s3cret" not in config.database_label


def test_database_label_of_a_loaded_postgres_url(tmp_path: Path) -> None:
    config = load(tmp_path, edit("./consumer.sqlite", "postgresql://ingest:hunter2@db/readings"))
    assert config.is_postgres
    assert config.database == "postgresql://ingest:hunter2@db/readings"
    assert "hunter2" not in config.database_label
    assert config.database_label == "postgresql://ingest:***@db/readings"


def test_a_malformed_postgres_url_is_a_config_problem_without_its_password(tmp_path: Path) -> None:
    bad = edit("./consumer.sqlite", "postgresql://ingest:s3cret@[::1/readings")
    path = tmp_path / "consumer.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as caught:
        load_consumer_config(path)
    [problem] = caught.value.problems
    assert problem.path == "database"
    assert "not a valid PostgreSQL URL" in problem.hint
    assert "s3cret" not in str(problem)


def test_mask_passwords_in_error_text() -> None:
    text = 'connection failed: "postgresql://ingest:s3cret@db/x?password=other" refused'
    masked = mask_passwords(text)
    assert "s3cret" not in masked and "other" not in masked
    assert "postgresql://ingest:***@db/x?password=***" in masked
