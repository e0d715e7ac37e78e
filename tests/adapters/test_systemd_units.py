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

from devices.registry import DRIVERS
from gateway.ops.install import DOC_DIR, SYSUSERS, UNITS
from tests.support.procs import REPO

ANALYZE = shutil.which("systemd-analyze")
SYSTEMCTL = shutil.which("systemctl")


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
    assert "\nPrivateDevices=yes" not in gateway  # it would hide the serial ports
    assert "\nDevicePolicy=closed\n" in gateway
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in gateway


# What each driver opens: the device-node classes (/proc/devices names) and the group that
# owns them. A driver added to the registry must be placed here, and the unit must allow it.
DRIVER_DEVICES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "serial": (("ttyUSB", "ttyACM", "ttyAMA", "ttyS"), "dialout"),
    "modbus": (("ttyUSB", "ttyACM", "ttyAMA", "ttyS"), "dialout"),
    "nmea": (("ttyUSB", "ttyACM", "ttyAMA", "ttyS"), "dialout"),
    "gpio": (("gpiochip",), "gpio"),
    "bme280": (("i2c",), "i2c"),
    "w1": ((), None),  # /sys/bus/w1/devices: sysfs, readable under ProtectKernelTunables
    "simulator": ((), None),
}


def test_the_gateway_unit_lets_every_driver_reach_its_devices() -> None:
    assert set(DRIVER_DEVICES) == set(DRIVERS)
    text = (REPO / "systemd" / UNITS[0]).read_text()
    allowed = {line.split("=", 1)[1] for line in text.splitlines()
               if line.startswith("DeviceAllow=")}
    [groups] = [line.split("=", 1)[1].split() for line in text.splitlines()
                if line.startswith("SupplementaryGroups=")]
    sysusers = (REPO / "systemd/sysusers.d" / SYSUSERS).read_text()
    for driver, (classes, group) in DRIVER_DEVICES.items():
        for name in classes:
            assert f"char-{name} rw" in allowed, driver
        if group is not None:
            assert group in groups, driver
            assert f"\nm mqtt-gateway {group}\n" in sysusers, driver
    # Nothing beyond what the drivers need.
    needed = {f"char-{name} rw" for classes, _ in DRIVER_DEVICES.values() for name in classes}
    assert allowed == needed
    assert set(groups) == {g for _, g in DRIVER_DEVICES.values() if g is not None}


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
        for group in ("dialout", "gpio", "i2c"):
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
        assert urls[0] == f"file:///{DOC_DIR}/README.md"
        assert f"file:///{DOC_DIR}/docs/operations.md" in urls
        for url in urls:
            assert (installed / url.removeprefix("file:///")).is_file(), url
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
    [error] = [line for line in bad.stderr.splitlines() if not line.startswith("warning:")]
    assert error.startswith(f"error: no unit files under {tmp_path / 'empty'}/systemd")
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "other").exists()


def enable(root: Path) -> list[Path]:
    """Enable both units under `root` as the operator would (the `*.wants/` links)."""
    if SYSTEMCTL is not None:
        subprocess.run([SYSTEMCTL, f"--root={root}", "enable", *UNITS], check=True,
                       capture_output=True)
    else:
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True)
        for unit in UNITS:
            (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    links = sorted(p for p in (root / "etc/systemd/system").glob("*.wants/*") if p.is_symlink())
    assert [p.name for p in links] == sorted(UNITS)
    return links


def test_uninstall_removes_units_and_keeps_config_and_state(installed: Path) -> None:
    state = installed / "var/lib/mqtt-gateway"
    state.mkdir(parents=True)
    (state / "outbox.sqlite").write_bytes(b"")
    links = enable(installed)
    done = cli("uninstall-service", "--root", str(installed))
    assert done.returncode == 0, done.stderr
    for link in links:  # no dangling multi-user.target.wants/ link left behind
        assert not link.is_symlink() and not link.exists(), link
    lines = done.stdout.splitlines()
    if SYSTEMCTL is not None:  # disabled before a unit file went
        disabled = next(i for i, line in enumerate(lines) if " disable " in line)
        assert lines[disabled].startswith(f"ran {SYSTEMCTL} --root={installed} disable ")
        removed = next(i for i, line in enumerate(lines)
                       if line == f"remove {installed / 'etc/systemd/system' / UNITS[0]}")
        assert disabled < removed
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
def test_install_into_root_refuses_a_program_the_service_cannot_see(tmp_path: Path) -> None:
    hidden = tmp_path / "clone/.venv/bin/mqtt-gateway"  # pytest's tmp_path is under /tmp
    hidden.parent.mkdir(parents=True)
    hidden.write_text("#!/bin/sh\n")
    done = cli("install-service", "--dry-run", "--exec", str(hidden))  # into /, writes nothing
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: ExecStart would be {hidden}, under /tmp, which the "
                                  "service cannot see (PrivateTmp=yes in the unit)")
    assert "/opt/mqtt-gateway" in done.stderr and "--exec PATH" in done.stderr
    assert "would write" not in done.stdout and "Traceback" not in done.stderr
    # Under --root (packaging) it is a warning: the target may lay the program out otherwise.
    packaged = install(tmp_path / "root", "--exec", str(hidden))
    assert packaged.returncode == 0, packaged.stderr
    assert packaged.stderr.startswith(f"warning: ExecStart would be {hidden}")
    # An explicit program the service can see goes into ExecStart, as given.
    done = install(tmp_path / "other", "--exec", "/opt/mqtt-gateway/bin/mqtt-gateway")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "other/etc/systemd/system" / UNITS[0]).read_text()
    assert "\nExecStart=/opt/mqtt-gateway/bin/mqtt-gateway run " in text
    assert "sudo -u mqtt-gateway /opt/mqtt-gateway/bin/mqtt-gateway status" in done.stdout


def _visible_dir() -> Path:
    """A writable directory the units do not hide (the checkout may itself be under /tmp)."""
    for where in (REPO / ".venv", Path("/var/cache"), Path("/srv"), Path("/opt")):
        hidden = str(where.resolve()).startswith(("/tmp", "/var/tmp", "/home", "/root", "/run"))
        if not hidden and where.is_dir() and os.access(where, os.W_OK):
            return where
    pytest.skip("no writable directory outside /tmp, /var/tmp, /home, /root and /run")


def test_install_into_root_refuses_a_script_whose_interpreter_is_hidden(tmp_path: Path) -> None:
    script = _visible_dir() / f"mqtt-gateway-test-exec-{tmp_path.name}"
    script.write_text(f"#!{tmp_path}/venv/bin/python3\nimport sys\n")
    try:
        done = cli("install-service", "--dry-run", "--exec", str(script))
    finally:
        script.unlink()
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: the interpreter of {script} would be {tmp_path}/venv/"
                                  "bin/python3, under /tmp, which the service cannot see")
