"""The unit files and install-service, checked by systemd's own tools on real files.

`systemd-analyze security --offline=true --threshold=15` (exposure 1.5 or
lower) and `systemd-analyze verify --recursive-errors=yes` run on the units
as install-service writes them into a temporary root (verify needs the
ExecStart binary to exist, and there it does).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.ops.install import DOC_DIR, UNITS
from tests.support.procs import REPO

ANALYZE = shutil.which("systemd-analyze")


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mqtt-gateway install-service --root ROOT ...` through this venv's console script."""
    script = Path(sys.executable).parent / "mqtt-gateway"
    return subprocess.run([str(script), "install-service", "--root", str(root), *args],
                          capture_output=True, text=True, check=False, cwd=REPO)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script with these arguments."""
    script = Path(sys.executable).parent / "mqtt-gateway"
    return subprocess.run([str(script), *args], capture_output=True, text=True, check=False)


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A temporary root with both units installed."""
    done = install(tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (package systemd)")
@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_is_at_most_1_5(installed: Path, unit: str) -> None:
    for path in (REPO / "systemd" / unit, installed / "etc/systemd/system" / unit):
        done = subprocess.run([str(ANALYZE), "security", "--offline=true", "--threshold=15",
                               str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        assert "Overall exposure level" in done.stdout


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (package systemd)")
@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_clean(installed: Path, unit: str) -> None:
    path = installed / "etc/systemd/system" / unit
    done = subprocess.run([str(ANALYZE), "verify", "--recursive-errors=yes", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    own = [line for line in done.stderr.splitlines() if unit in line]
    assert own == [], own


def test_units_are_notify_with_watchdog_and_device_access() -> None:
    gateway = (REPO / "systemd" / UNITS[0]).read_text()
    consumer = (REPO / "systemd" / UNITS[1]).read_text()
    for text in (gateway, consumer):
        for line in ("Type=notify", "Restart=on-failure", "NotifyAccess=main", "User=mqtt-gateway"):
            assert f"\n{line}\n" in text
        assert "\nWatchdogSec=" in text and "\nStateDirectory=" in text
        assert "\nConfigurationDirectory=mqtt-gateway\n" in text
    assert "\nSupplementaryGroups=dialout gpio\n" in gateway
    assert "\nPrivateDevices=yes" not in gateway  # it would hide the serial ports
    for device in ("char-ttyUSB", "char-ttyACM", "char-gpiochip"):
        assert f"DeviceAllow={device} rw" in gateway
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in gateway


def test_install_writes_units_user_and_configs_and_never_overwrites_a_config(
        tmp_path: Path) -> None:
    done = install(tmp_path)
    assert done.returncode == 0, done.stderr
    script = Path(sys.executable).parent / "mqtt-gateway"
    for unit in UNITS:
        text = (tmp_path / "etc/systemd/system" / unit).read_text()
        exec_lines = [line for line in text.splitlines() if line.startswith("ExecStart")]
        assert exec_lines and all(line.split("=", 1)[1].startswith(f"{script} ")
                                  for line in exec_lines)
    gateway_yaml = tmp_path / "etc/mqtt-gateway/gateway.yaml"
    assert "state_dir: /var/lib/mqtt-gateway " in gateway_yaml.read_text()
    check = cli("check", "--config", str(gateway_yaml))
    assert check.returncode == 0, check.stderr
    consumer_yaml = tmp_path / "etc/mqtt-gateway/consumer.yaml"
    assert "database: /var/lib/mqtt-gateway-consumer/consumer.sqlite" in consumer_yaml.read_text()
    assert cli("check", "--config", str(consumer_yaml)).returncode == 0
    assert stat.S_IMODE(consumer_yaml.stat().st_mode) == 0o640  # it may hold a database URL
    assert stat.S_IMODE(gateway_yaml.stat().st_mode) == 0o644
    if shutil.which("systemd-sysusers"):
        passwd = (tmp_path / "etc/passwd").read_text()
        assert passwd.startswith("mqtt-gateway:x:") or "\nmqtt-gateway:x:" in passwd
        groups = (tmp_path / "etc/group").read_text()
        for group in ("dialout", "gpio"):
            line = next(g for g in groups.splitlines() if g.startswith(f"{group}:"))
            assert line.endswith("mqtt-gateway")
        own = next(g for g in groups.splitlines() if g.startswith("mqtt-gateway:"))
        if os.geteuid() == 0:
            assert consumer_yaml.stat().st_gid == int(own.split(":")[2])
        assert "chgrp mqtt-gateway etc/mqtt-gateway/consumer.yaml" in done.stdout
    for step in ("systemctl daemon-reload", "systemctl enable --now mqtt-gateway",
                 "journalctl -u mqtt-gateway", "systemctl status mqtt-gateway"):
        assert step in done.stdout

    gateway_yaml.write_text(gateway_yaml.read_text() + "# edited by the operator\n")
    again = install(tmp_path)
    assert again.returncode == 0
    assert gateway_yaml.read_text().endswith("# edited by the operator\n")
    assert f"kept {gateway_yaml}" in again.stdout


def test_install_as_another_user_and_dry_run(tmp_path: Path) -> None:
    dry = install(tmp_path, "--dry-run", "--user", "sensors")
    assert dry.returncode == 0, dry.stderr
    assert "would write" in dry.stdout
    assert list(tmp_path.iterdir()) == []
    done = install(tmp_path, "--user", "sensors")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "etc/systemd/system" / UNITS[0]).read_text()
    assert "\nUser=sensors\n" in text and "\nGroup=sensors\n" in text
    assert "u sensors -" in (tmp_path / "etc/sysusers.d/mqtt-gateway.conf").read_text()


def test_install_puts_the_documentation_where_the_units_point(installed: Path) -> None:
    docs = installed / DOC_DIR
    for unit in UNITS:
        text = (installed / "etc/systemd/system" / unit).read_text()
        urls = [line.split("=", 1)[1] for line in text.splitlines()
                if line.startswith("Documentation=")]
        assert urls == [f"file:///{DOC_DIR}/README.md"]
        assert (installed / urls[0].removeprefix("file:///")).is_file()
    assert (docs / "README.md").read_text() == (REPO / "README.md").read_text()
    assert (docs / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    examples = sorted(p.name for p in (docs / "config").iterdir())
    assert examples == sorted(p.name for p in (REPO / "config").glob("*.yaml"))
    assert sorted(p.name for p in docs.glob("docs/*.md")) == \
        sorted(p.name for p in (REPO / "docs").glob("*.md"))


def test_install_from_a_named_source_and_from_one_without_units(tmp_path: Path) -> None:
    done = install(tmp_path / "root", "--source", str(REPO))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "root/etc/systemd/system" / UNITS[0]).is_file()
    (tmp_path / "empty").mkdir()
    bad = install(tmp_path / "other", "--source", str(tmp_path / "empty"))
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"error: no unit files under {tmp_path / 'empty'}/systemd")
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "other").exists()


def test_uninstall_removes_units_and_keeps_config_and_state(installed: Path) -> None:
    state = installed / "var/lib/mqtt-gateway"
    state.mkdir(parents=True)
    (state / "outbox.sqlite").write_bytes(b"")
    done = cli("uninstall-service", "--root", str(installed))
    assert done.returncode == 0, done.stderr
    for unit in UNITS:
        assert not (installed / "etc/systemd/system" / unit).exists()
        assert f"remove {installed / 'etc/systemd/system' / unit}" in done.stdout
    assert (installed / "etc/mqtt-gateway/gateway.yaml").exists()
    assert (state / "outbox.sqlite").exists()
    assert not (installed / DOC_DIR).exists()
    assert (installed / DOC_DIR).parent.is_dir()  # only what install-service made is gone
    assert "kept" in done.stdout and "(config)" in done.stdout and "(state)" in done.stdout


@pytest.mark.parametrize("args", [
    ("install-service", "--user", "Not A User"),
    ("install-service", "--root"),
    ("uninstall-service", "--user", "x"),
    ("install-service", "--bogus"),
])
def test_usage_errors_exit_2_with_a_message(args: tuple[str, ...]) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert "error:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_each_unit_bounds_its_descriptors(unit: str) -> None:
    """The metrics endpoint holds at most 17 descriptors; the limit says what the rest get."""
    lines = (REPO / "systemd" / unit).read_text().splitlines()
    assert "LimitNOFILE=1024" in lines
