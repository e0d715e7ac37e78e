"""Broker credentials for real: a mosquitto with a password file and a TLS listener.

The password and the private key are read from files (relative names in
$CREDENTIALS_DIRECTORY, as systemd's LoadCredential= provides them, or
beside the config) and never appear in logs, `status` or `check` output.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.ports import free_port
from tests.support.procs import Service
from tests.support.rig import run_cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SECRET = "s3cret-Pa55-7f1c2e"
WRONG = "wrong-Pa55-91ab3c"


def _passwd(path: Path, user: str, password: str) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (package mosquitto)")
    subprocess.run([tool, "-b", "-c", str(path), user, password], check=True)


def _gateway_config(path: Path, gateway_id: str, url: str, broker_keys: str) -> None:
    path.write_text(f"""version: 1
gateway:
  id: {gateway_id}
  state_dir: {path.parent / ('state-' + gateway_id)}
  summary_interval: 1s
broker:
  url: {url}
{broker_keys}store:
  commit_interval: 50ms
devices:
  - id: sim
    driver: simulator
    interval: 20ms
    streams:
      - {{name: t, field: temp_c, delivery: at-least-once}}
""")


def _delivered(database: Path, gateway_id: str) -> int:
    if not database.exists():
        return 0
    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT count(*) FROM readings WHERE gateway = ?",
                                (gateway_id,)).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert WRONG not in text


def test_password_from_credentials_directory_and_a_wrong_one_refused(tmp_path: Path) -> None:
    _passwd(tmp_path / "passwords", "edge", SECRET)
    broker = Mosquitto(tmp_path / "broker", persistent=False,
                       extra=f"allow_anonymous false\npassword_file {tmp_path / 'passwords'}\n")
    broker.start()
    creds = tmp_path / "credentials"  # what LoadCredential= makes
    creds.mkdir()
    (creds / "broker-password").write_text(SECRET + "\n")
    (tmp_path / "wrong-password").write_text(WRONG)
    consumer_yaml = tmp_path / "consumer.yaml"
    consumer_yaml.write_text(f"""version: 1
broker:
  url: {broker.url}
  client_id: consumer-creds
  subscribe: gw/#
  username: edge
  password_file: broker-password
database: {tmp_path / 'consumer.sqlite'}
commit_interval: 50ms
""")
    good = tmp_path / "good.yaml"
    _gateway_config(good, "gw-good", broker.url,
                    "  username: edge\n  password_file: broker-password\n")
    bad = tmp_path / "bad.yaml"
    _gateway_config(bad, "gw-bad", broker.url,
                    "  username: edge\n  password_file: wrong-password\n")  # beside the config
    consumer = Service("consume", consumer_yaml, tmp_path, "consumer")
    gateway = Service("run", good, tmp_path, "gateway")
    refused = Service("run", bad, tmp_path, "refused")
    consumer.env = gateway.env = {"CREDENTIALS_DIRECTORY": str(creds)}
    try:
        consumer.start()
        consumer.wait_log(r"subscribed to gw/#")
        gateway.start()
        wait_for(lambda: _delivered(tmp_path / "consumer.sqlite", "gw-good") >= 50, timeout=20,
                 what="readings through the authenticated broker")

        refused.start()
        refused.wait_log(r"refused the connection: (Bad user name or password|Not authorized)")
        refused.wait_log(r"readings are kept in the store")
        wait_for(lambda: _pending(bad, tmp_path) > 20, timeout=15, interval=0.2,
                 what="readings kept in the refused gateway's store")
        assert _delivered(tmp_path / "consumer.sqlite", "gw-bad") == 0

        statuses = [run_cli("status", "--config", str(c), *extra, cwd=tmp_path)
                    for c in (good, bad) for extra in ((), ("--json",))]
        checks = [run_cli("check", "--config", str(bad), cwd=tmp_path)]
        assert all(s.returncode == 0 for s in statuses)
        assert gateway.terminate() == 0
        assert refused.terminate() == 0
        assert consumer.terminate() == 0
        _assert_no_secret(gateway.log_text(), refused.log_text(), consumer.log_text(),
                          *(s.stdout + s.stderr for s in statuses + checks))
    finally:
        for service in (gateway, refused, consumer):
            service.ensure_stopped()
        broker.stop()


def _pending(config: Path, workdir: Path) -> int:
    import json  # noqa: PLC0415

    done = run_cli("status", "--config", str(config), "--json", cwd=workdir)
    if done.returncode != 0:
        return 0
    return int(json.loads(done.stdout)["backlog"]["at-least-once"]["pending"])


def test_a_missing_password_file_stops_run_and_check_with_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    _gateway_config(config, "gw-missing", f"mqtt://127.0.0.1:{free_port()}",
                    "  username: edge\n  password_file: nowhere/broker-password\n")
    run = run_cli("run", "--config", str(config), cwd=tmp_path)
    check = run_cli("check", "--config", str(config), cwd=tmp_path)
    expected = (f"{config}:9: broker.password_file: expected a readable file; found no such file: "
                f"{tmp_path / 'nowhere/broker-password'}")
    assert run.returncode == 1
    assert [line for line in run.stderr.splitlines() if "ERROR" in line] == [
        line for line in run.stderr.splitlines() if expected in line]
    assert expected in run.stderr
    assert check.returncode == 1
    assert f"error: {expected}" in check.stderr
    assert "Traceback" not in run.stderr + check.stderr


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "keyUsage=digitalSignature")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
                 "-extfile", f"{name}.ext", cwd=d)


def test_tls_with_a_client_certificate_from_the_credentials_directory(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    tls_port = free_port()
    broker = Mosquitto(tmp_path / "broker", persistent=False, extra=(
        f"listener {tls_port} 127.0.0.1\ncafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
        f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"))
    broker.start()
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        shutil.copy(pki / name, creds / name)
    config = tmp_path / "gateway.yaml"
    _gateway_config(config, "gw-tls", f"mqtts://127.0.0.1:{tls_port}",
                    "  ca_file: ca.crt\n  cert_file: client.crt\n  key_file: client.key\n")
    gateway = Service("run", config, tmp_path, "gateway")
    gateway.env = {"CREDENTIALS_DIRECTORY": str(creds)}
    try:
        gateway.start()
        gateway.wait_log(rf"connected to broker mqtts://127.0.0.1:{tls_port}")
        gateway.wait_log(r"broker answered No matching subscribers")  # a PUBACK over TLS
        assert gateway.terminate() == 0
        key = (creds / "client.key").read_text()
        body = "".join(key.strip().splitlines()[1:-1])
        log = gateway.log_text()
        assert body[:40] not in log and "PRIVATE KEY" not in log

        # Without the client certificate the broker turns the handshake down: logged, kept.
        _gateway_config(config, "gw-tls", f"mqtts://127.0.0.1:{tls_port}", "  ca_file: ca.crt\n")
        gateway.start()
        gateway.wait_log(r"readings are kept in the store")
        # Each attempt fails the same way; the log says so once (repeats only at DEBUG).
        gateway.wait_log(r"failed to receive on socket: .*CERTIFICATE_REQUIRED", count=3)
        assert gateway.terminate() == 0
        log = gateway.log_path.read_text()
        assert len(re.findall(r"ERROR paho: failed to receive on socket", log)) == 1
        assert len(re.findall(r"WARNING gateway: .*readings are kept in the store", log)) == 1
    finally:
        gateway.ensure_stopped()
        broker.stop()
