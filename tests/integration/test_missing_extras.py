"""A config that needs an optional library this installation lacks, with real processes.

The library is made missing for the started process only: a `sitecustomize` on its
PYTHONPATH puts None in `sys.modules` for it, so importing it fails as when it is
not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.procs import REPO, Service

pytestmark = pytest.mark.integration

MODBUS_LINE = "device climate: driver modbus needs pymodbus: pip install 'mqtt-gateway[modbus]'"
SIMULATOR = """\
  - id: sim
    driver: simulator
    interval: 50ms
    streams:
      - {name: t, field: temp_c, delivery: at-least-once}
"""
MODBUS = """\
  - id: climate
    driver: modbus
    port: /dev/ttyUSB0
    registers:
      - {field: temperature_c, address: 0, type: int16}
    streams:
      - {name: temperature, field: temperature_c, delivery: at-least-once}
"""


def without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """The environment of a process in which `modules` cannot be imported."""
    site = tmp_path / "without"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in modules))
    return {"PYTHONPATH": f"{site}{os.pathsep}{REPO}", "PYTHONUNBUFFERED": "1"}


def gateway_config(path: Path, state: Path, url: str, devices: str) -> Path:
    path.write_text(f"""version: 1
gateway:
  id: extras-gw
  state_dir: {state}
  summary_interval: 1s
broker:
  url: {url}
store:
  commit_interval: 50ms
devices:
{devices}""")
    return path


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=60, check=False)


def test_run_refuses_to_start_naming_the_extra_and_opens_no_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = gateway_config(tmp_path / "gateway.yaml", state, "mqtt://127.0.0.1:1",
                            SIMULATOR + MODBUS)
    done = run(without(tmp_path, "pymodbus"), tmp_path, "run", "--config", str(config))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [f"error: {MODBUS_LINE}", "1 problem found"]
    assert not state.exists()
    installed = run({"PYTHONPATH": str(REPO)}, tmp_path, "check", "--config", str(config))
    assert installed.returncode == 0, installed.stderr


def test_consume_with_postgres_and_no_psycopg_names_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "consumer.yaml"
    config.write_text("""version: 1
broker:
  url: mqtt://127.0.0.1:1
  client_id: consumer-1
  subscribe: gw/#
database: postgresql://reader:secret@127.0.0.1:1/readings
""")
    done = run(without(tmp_path, "psycopg"), tmp_path, "consume", "--config", str(config))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: a postgresql:// database needs psycopg: pip install 'mqtt-gateway[postgres]'",
        "1 problem found"]
    assert "secret" not in done.stderr


def test_a_reload_adding_a_device_whose_library_is_missing_is_rejected(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=False)
    broker.start()
    config = gateway_config(tmp_path / "gateway.yaml", tmp_path / "state", broker.url, SIMULATOR)
    gateway = Service("run", config, tmp_path, "gateway")
    gateway.env = without(tmp_path, "pymodbus")
    try:
        gateway.start()
        gateway.wait_log(r"device=sim up")
        assert gateway.proc is not None
        gateway_config(config, tmp_path / "state", broker.url, SIMULATOR + MODBUS)
        os.kill(gateway.proc.pid, signal.SIGHUP)
        gateway.wait_log(r"reload rejected: 1 problem in .*; still running the previous config")
        assert f"reload rejected: {MODBUS_LINE}" in gateway.log_text()
        summaries = gateway.log_path.read_text().count("summary: read")
        gateway.wait_log(r"summary: read \d+", count=summaries + 2)  # running on, not stopped
        assert gateway.terminate() == 0
        assert "Traceback" not in gateway.log_text()
    finally:
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.kill()
        broker.stop()
