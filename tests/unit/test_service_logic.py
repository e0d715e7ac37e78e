"""Pure pieces of running as a service: reload plans, the watchdog rule, new config keys,
credential paths, journald lines, install rendering, and the dashboard's metric names."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.cloud.metrics import CONSUMER_METRICS
from gateway.config.common import ConfigError, ListenAddress, parse_listen
from gateway.config.consumer_config import load_consumer_config
from gateway.config.credentials import BrokerSecrets, CredentialError, load_secrets, resolve
from gateway.config.gateway_config import GatewayConfig, load_gateway_config
from gateway.edge.metrics import GATEWAY_METRICS
from gateway.edge.reload import plan_reload
from gateway.ops.install import render_sysusers, render_unit, service_config
from gateway.ops.logs import JournalFormatter, journal_stream
from gateway.ops.metrics import sample_names
from gateway.ops.notify import watchdog_interval
from gateway.ops.watchdog import Progress, StallDetector
from tests.support.procs import REPO

BASE = """\
version: 1
gateway:
  id: gw1
broker:
  url: {url}
{broker}devices:
  - id: climate
    driver: simulator
    streams:
      - {{name: temperature, field: temp_c, delivery: at-least-once}}
{extra}"""


def gateway(tmp_path: Path, *, url: str = "mqtt://127.0.0.1:1883", broker: str = "",
            extra: str = "", name: str = "gw.yaml") -> GatewayConfig:
    """A gateway config file written and loaded."""
    path = tmp_path / name
    path.write_text(BASE.format(url=url, broker=broker, extra=extra))
    return load_gateway_config(path, DRIVERS)


def problems(tmp_path: Path, **kwargs: str) -> list[str]:
    """The problems `check` prints for a gateway config."""
    with pytest.raises(ConfigError) as caught:
        gateway(tmp_path, **kwargs)
    return [str(p) for p in caught.value.problems]


# -- reload -----------------------------------------------------------------------

def test_reload_plan_names_device_changes_and_sections_that_need_a_restart(tmp_path: Path) -> None:
    old = gateway(tmp_path)
    two = """  - id: meter
    driver: simulator
    streams:
      - {name: pulses, field: counter, delivery: exactly-once}
"""
    new = gateway(tmp_path, extra=two)  # the same file, rewritten, as a reload reads it
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.changed, plan.needs_restart) == (("meter",), (), (), ())
    assert [d.id for d in plan.config.devices] == ["climate", "meter"]

    changed = gateway(tmp_path, url="mqtt://10.0.0.1:1883", extra="metrics: {listen: 9108}\n")
    changed = dataclasses.replace(changed, devices=(dataclasses.replace(
        changed.devices[0], options=dataclasses.replace(changed.devices[0].options, interval=5.0)),))
    plan = plan_reload(new, changed)
    assert (plan.added, plan.removed, plan.changed) == ((), ("meter",), ("climate",))
    assert plan.needs_restart == ("broker", "metrics")
    # The running broker and metrics settings are kept; only the devices are taken.
    assert plan.config.broker == new.broker and plan.config.metrics is None
    assert plan.config.devices == changed.devices
    assert plan_reload(old, old).empty


# -- the watchdog rule -------------------------------------------------------------

def test_a_hung_publisher_stops_pings_and_progress_resumes_them() -> None:
    detector = StallDetector(period=2.0, commit_interval=0.2)
    assert detector.problem(Progress(0.0, 0.0, True, True, 5, settled=10)) is None
    assert detector.problem(Progress(1.9, 1.9, True, True, 5, settled=10)) is None
    problem = detector.problem(Progress(2.1, 2.0, True, True, 5, settled=10))
    assert problem is not None and "publisher is hung: 5 messages in flight" in problem
    assert detector.problem(Progress(2.2, 2.2, True, True, 5, settled=11)) is None


@pytest.mark.parametrize("progress", [
    Progress(10.0, 10.0, True, connected=False, in_flight=50, settled=0),  # broker unreachable
    Progress(10.0, 10.0, True, connected=True, in_flight=0, settled=0),    # idle link
])
def test_an_unreachable_broker_or_an_idle_link_is_no_hang(progress: Progress) -> None:
    detector = StallDetector(period=2.0, commit_interval=0.2)
    detector.problem(Progress(0.0, 0.0, True, True, 50, settled=0))
    assert detector.problem(progress) is None


def test_a_stuck_committer_or_a_dead_task_stops_pings() -> None:
    detector = StallDetector(period=2.0, commit_interval=0.5)
    assert detector.problem(Progress(2.4, 0.0, True)) is None
    assert "committer has not run for 2.6s" in (detector.problem(Progress(2.6, 0.0, True)) or "")
    assert "task has died" in (detector.problem(Progress(1.0, 1.0, False)) or "")


@pytest.mark.parametrize(("env", "interval"), [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "abc"}, None),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
])
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str],
                                                     interval: float | None) -> None:
    assert watchdog_interval(env) == interval


# -- new config keys ---------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (9108, ListenAddress("127.0.0.1", 9108)),
    ("9108", ListenAddress("127.0.0.1", 9108)),
    ("0.0.0.0:9108", ListenAddress("0.0.0.0", 9108)),
    ("[::1]:9108", ListenAddress("::1", 9108)),
    ("localhost:0", None), (70000, None), ("host:", None), (True, None), ("a b:1", None),
])
def test_metrics_listen_values(value: object, expected: ListenAddress | None) -> None:
    assert parse_listen(value) == expected


def test_metrics_section_problems_name_file_line_and_key(tmp_path: Path) -> None:
    assert gateway(tmp_path).metrics is None
    assert gateway(tmp_path, extra="metrics: {listen: 9108}\n").metrics == \
        ListenAddress("127.0.0.1", 9108)
    assert problems(tmp_path, extra="metrics:\n  listen: 99999\n") == [
        f"{tmp_path / 'gw.yaml'}:12: metrics.listen: expected a port such as 9108 (on 127.0.0.1) "
        "or host:port such as 127.0.0.1:9108; found 99999 (an integer)"]
    found = problems(tmp_path, extra="metrics:\n  port: 9108\n")
    assert found[0] == (f"{tmp_path / 'gw.yaml'}:12: metrics.port: expected one of the known "
                        "keys (listen); found unknown key 'port'")
    assert found[1].startswith(f"{tmp_path / 'gw.yaml'}:12: metrics.listen: expected a port")
    assert found[1].endswith("found nothing (the key is missing)")


@pytest.mark.parametrize(("broker", "url", "expected"), [
    ("  password_file: pw\n", "mqtt://h:1883",
     "gw.yaml:6: broker.password_file: expected a password_file together with a username; "
     "found no username (add broker.username)"),
    ("  ca_file: ca.pem\n", "mqtt://h:1883",
     "gw.yaml:6: broker.ca_file: expected TLS files only with an mqtts:// url; found 'ca.pem' "
     "(use mqtts://host:8883 for TLS)"),
    ("  cert_file: c.pem\n", "mqtts://h:8883",
     "gw.yaml:6: broker.cert_file: expected cert_file and key_file together (client "
     "certificate); found no key_file"),
    ("  username: ''\n", "mqtt://h:1883",
     "gw.yaml:6: broker.username: expected 1-256 characters of a user name (no NUL); found ''"),
    ("  pasword_file: pw\n", "mqtt://h:1883",
     "gw.yaml:6: broker.pasword_file: expected one of the known keys"),
])
def test_credential_key_problems(tmp_path: Path, broker: str, url: str, expected: str) -> None:
    found = problems(tmp_path, broker=broker, url=url)
    assert any(p.startswith(f"{tmp_path}/{expected}") for p in found), found


def test_consumer_reads_credentials_and_metrics(tmp_path: Path) -> None:
    path = tmp_path / "consumer.yaml"
    path.write_text("""version: 1
broker:
  url: mqtts://broker.example:8883
  client_id: c1
  username: cloud
  password_file: pw
  ca_file: /etc/ssl/ca.pem
database: ./c.sqlite
metrics:
  listen: 9109
""")
    config = load_consumer_config(path)
    assert config.credentials.username == "cloud"
    assert [(f.key, f.name, f.line) for f in config.credentials.files] == [
        ("password_file", "pw", 6), ("ca_file", "/etc/ssl/ca.pem", 7)]
    assert config.metrics == ListenAddress("127.0.0.1", 9109)


# -- credential files ----------------------------------------------------------------

def test_relative_files_are_found_in_the_credentials_directory_else_beside_the_config(
        tmp_path: Path) -> None:
    config = str(tmp_path / "etc" / "gw.yaml")
    assert resolve("pw", config, {"CREDENTIALS_DIRECTORY": "/run/credentials/x"}) == \
        Path("/run/credentials/x/pw")
    assert resolve("pw", config, {}) == tmp_path / "etc" / "pw"
    assert resolve("/abs/pw", config, {"CREDENTIALS_DIRECTORY": "/run/c"}) == Path("/abs/pw")


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2-secret\n")
    (tmp_path / "pw").chmod(0o600)
    config = gateway(tmp_path, broker="  username: edge\n  password_file: pw\n")
    secrets = load_secrets(config.broker.credentials, {})
    assert secrets == BrokerSecrets("edge", "hunter2-secret", None)
    assert "hunter2" not in repr(secrets) and "hunter2" not in repr(config)
    (tmp_path / "pw").unlink()
    with pytest.raises(CredentialError) as caught:
        load_secrets(config.broker.credentials, {})
    assert str(caught.value) == (f"{tmp_path / 'gw.yaml'}:7: broker.password_file: expected a "
                                 f"readable file; found no such file: {tmp_path / 'pw'}")


def test_a_key_that_is_not_pem_is_reported_without_its_content(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a certificate SECRETBYTES\n")
    (tmp_path / "k.pem").write_text("not a key SECRETBYTES\n")
    config = gateway(tmp_path, url="mqtts://h:8883",
                     broker="  cert_file: c.pem\n  key_file: k.pem\n")
    with pytest.raises(CredentialError) as caught:
        load_secrets(config.broker.credentials, {})
    text = str(caught.value)
    assert "broker.cert_file: expected a PEM certificate and its private key" in text
    assert "SECRETBYTES" not in text


# -- journald lines ------------------------------------------------------------------

@pytest.mark.parametrize(("level", "prefix"), [
    (logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
    (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>"),
])
def test_journal_lines_carry_the_syslog_priority_and_no_time(level: int, prefix: str) -> None:
    record = logging.LogRecord("gateway", level, __file__, 1, "device=%s down\nsecond", ("a",),
                               None)
    lines = JournalFormatter().format(record).split("\n")
    assert lines == [f"{prefix}{logging.getLevelName(level)} gateway: device=a down",
                     f"{prefix}second"]


def test_journal_stream_matches_only_the_named_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as stream:
        import os  # noqa: PLC0415

        st = os.fstat(stream.fileno())
        assert journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not journal_stream(stream, {})
    assert not journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


# -- install rendering -------------------------------------------------------------

def test_units_get_this_installation_script_and_user() -> None:
    text = (REPO / "systemd/mqtt-gateway.service").read_text()
    unit = render_unit(text, "/opt/mg/.venv/bin/mqtt-gateway", "sensors")
    assert "/usr/local/bin/" not in unit
    assert "\nExecStart=/opt/mg/.venv/bin/mqtt-gateway run --config" in unit
    assert "\nUser=sensors\nGroup=sensors\n" in unit
    users = render_sysusers((REPO / "systemd/sysusers.d/mqtt-gateway.conf").read_text(), "sensors")
    assert "u sensors -" in users and "m sensors dialout" in users and "mqtt-gateway -" not in users


def test_installed_example_configs_keep_their_state_in_the_state_directory() -> None:
    gateway_yaml = service_config((REPO / "config/gateway.yaml").read_text())
    assert re.search(r"(?m)^  state_dir: /var/lib/mqtt-gateway\b", gateway_yaml)
    consumer = service_config((REPO / "config/consumer.yaml").read_text())
    assert re.search(r"(?m)^database: /var/lib/mqtt-gateway-consumer/consumer.sqlite\b", consumer)


# -- the dashboard -----------------------------------------------------------------

def test_every_metric_in_the_dashboard_is_exported() -> None:
    dashboard = json.loads((REPO / "dashboards/mqtt-gateway.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in expressions for name in re.findall(r"\bmqtt_\w+", expr)}
    exported = sample_names(GATEWAY_METRICS) | sample_names(CONSUMER_METRICS)
    assert used, "no metric found in the dashboard"
    assert used <= exported, used - exported
    # And each exported metric has a panel.
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert families >= set(GATEWAY_METRICS) | set(CONSUMER_METRICS)
