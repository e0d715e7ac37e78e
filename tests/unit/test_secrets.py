"""Secrets never shown: one masking function, passwords from files, warnings, DSNs."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.common import ConfigError
from gateway.config.consumer_config import load_consumer_config
from gateway.config.credentials import CredentialError, load_database_password, load_secrets
from gateway.core.redact import mask_secrets
from gateway.ops.logs import JournalFormatter, _UtcFormatter

# Passwords holding every character that has cut a mask short before.
PASSWORDS = ["p@ss", "a:b", "sl/ash", "per%40cent", "@:/%@", "x@y:z/w%20v"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_url_password_is_masked_whole(password: str) -> None:
    for url in (f"mqtt://user:{password}@broker:1883", f"postgresql://u:{password}@db/x",
                f"found 'postgresql://u:{password}@db:5432/x?sslmode=require' (a string)"):
        masked = mask_secrets(url)
        assert password not in masked and "***" in masked, masked
        assert "@db" in masked or "@broker" in masked


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_dsn_and_a_query_password_are_masked(password: str) -> None:
    for text in (f"host=db password={password} dbname=x",
                 f"host=db password='{password} with space' user=u",
                 f"postgresql://u@db/x?sslmode=require&password={password}"):
        assert password not in mask_secrets(text), text


def test_text_without_secrets_is_left_alone() -> None:
    for text in ("device=dev stream=t seq=5: broker answered 0x10", "mqtt://127.0.0.1:1883",
                 "mqtt://user@host:1883", "a@b"):
        assert mask_secrets(text) == text


@pytest.mark.parametrize("formatter", [JournalFormatter(), _UtcFormatter("%(message)s")])
def test_every_log_line_is_masked(formatter: logging.Formatter) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.secrets")
    logger.addHandler(handler)
    try:
        logger.error("cannot connect to %s", "postgresql://u:p@ss@db/x")
    finally:
        logger.removeHandler(handler)
    assert "p@ss" not in out.getvalue() and "postgresql://u:***@db/x" in out.getvalue()


CONSUMER = """\
version: 1
broker:
  url: {url}
  client_id: consumer-1
{broker}database: {database}
{extra}"""


def consumer(tmp_path: Path, *, url: str = "mqtt://127.0.0.1:1883", broker: str = "",
             database: str = "./c.sqlite", extra: str = "") -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(CONSUMER.format(url=url, broker=broker, database=database, extra=extra))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_consumer_config(path)
    return [str(p) for p in caught.value.problems]


def test_a_libpq_dsn_is_refused_not_taken_for_a_file(tmp_path: Path) -> None:
    path = consumer(tmp_path, database="'host=db user=u password=s3cret dbname=x'")
    [problem] = problems(path)
    assert "a libpq key=value string is not accepted" in problem
    assert "postgresql://user@host:5432/dbname" in problem and "s3cret" not in problem
    assert not (tmp_path / "host=db user=u password=s3cret dbname=x").exists()


def test_the_database_password_comes_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "db-password").write_text("p@ss:/%\n")
    (tmp_path / "db-password").chmod(0o600)
    config = load_consumer_config(consumer(
        tmp_path, database="postgresql://u@db/x", extra="database_password_file: db-password\n"))
    secret = load_database_password(config.database_password_file, str(config.path), {})
    assert secret.password == "p@ss:/%" and secret.warnings == ()
    assert "p@ss" not in repr(secret)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db-password").write_text("from-systemd")
    (creds / "db-password").chmod(0o400)
    assert load_database_password(config.database_password_file, str(config.path),
                                  {"CREDENTIALS_DIRECTORY": str(creds)}).password == "from-systemd"
    (tmp_path / "db-password").unlink()
    with pytest.raises(CredentialError, match="database_password_file: expected a readable"):
        load_database_password(config.database_password_file, str(config.path), {})


def test_a_database_password_file_needs_postgresql_and_a_url_without_a_password(
        tmp_path: Path) -> None:
    assert "a SQLite database has no password" in problems(consumer(
        tmp_path, extra="database_password_file: pw\n"))[0]
    [twice] = problems(consumer(tmp_path, database="postgresql://u:inline@db/x",
                                extra="database_password_file: pw\n"))
    assert "take the password out of the URL" in twice and "inline" not in twice


def test_a_loose_password_file_and_clear_text_are_warned_about(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret")
    (tmp_path / "pw").chmod(0o644)
    broker = "  username: u\n  password_file: pw\n"
    remote = load_consumer_config(consumer(tmp_path, url="mqtt://broker.example:1883",
                                           broker=broker))
    warnings = load_secrets(remote.credentials, {}).warnings
    assert any("is readable by its group and others (mode 0644): chmod 600" in w
               for w in warnings), warnings
    assert any("in clear text over mqtt://" in w for w in warnings), warnings
    (tmp_path / "pw").chmod(0o600)
    local = load_consumer_config(consumer(tmp_path, broker=broker))
    assert load_secrets(local.credentials, {}).warnings == ()
    tls = load_consumer_config(consumer(tmp_path, url="mqtts://broker.example:8883",
                                        broker=broker))
    assert load_secrets(tls.credentials, {}).warnings == ()


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False,
                          cwd=path.parent)


@pytest.mark.parametrize("password", ["p@ss", "a:b/c%d@e"])
def test_check_never_prints_a_password(tmp_path: Path, password: str) -> None:
    cases = [
        {"database": f"'postgresql://u:{password}@127.0.0.1:5432/test'"},
        {"url": f"'mqtt://user:{password}@broker:1883'"},
        {"database": f"'host=db password={password} dbname=x'"},
    ]
    outputs = []
    for n, case in enumerate(cases):
        (tmp_path / str(n)).mkdir()
        done = _check(consumer(tmp_path / str(n), **case))
        outputs.append(done.stdout + done.stderr)
    print("\n".join(outputs))
    for output in outputs:
        assert password not in output and "***" in output, output
        assert not any(len(piece) > 2 and piece in output
                       for piece in re.split(r"[:/]", password)), output
        assert "Traceback" not in output
