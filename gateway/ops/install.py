"""`mqtt-gateway install-service` and `uninstall-service`: units, user and config under a root.

Install writes, under `root` (/ by default; another directory for packaging
and tests):

- `etc/systemd/system/mqtt-gateway.service` and `mqtt-gateway-consumer.service`,
  with ExecStart pointing at this installation's console script and the
  chosen user;
- `etc/sysusers.d/mqtt-gateway.conf` (the service user, in groups dialout and
  gpio), applied with `systemd-sysusers --root ROOT` when that tool exists;
- `etc/mqtt-gateway/gateway.yaml` and `consumer.yaml` from the examples,
  never over an existing file.

Uninstall removes the units and the sysusers snippet; config, state and the
user stay (it says so). Plans are pure data; `apply` does the file work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import MqttGatewayError

UNITS = ("mqtt-gateway.service", "mqtt-gateway-consumer.service")
SYSUSERS = "mqtt-gateway.conf"
CONFIGS = ("gateway.yaml", "consumer.yaml")
DEFAULT_USER = "mqtt-gateway"
DEFAULT_EXEC = "/usr/local/bin/mqtt-gateway"
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}")


class InstallError(MqttGatewayError):
    """The install cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class FileAction:
    """One file to write (`text`) or to remove (`text` None)."""

    path: Path
    text: str | None
    keep_existing: bool = False  # a config: written only when absent


def source_dir(given: Path | None = None) -> Path:
    """The checkout holding systemd/ and config/ (given, or beside this package)."""
    candidates = [given] if given is not None else [Path(__file__).resolve().parents[2]]
    for base in candidates:
        if base is not None and (base / "systemd" / UNITS[0]).is_file():
            return base
    where = given or candidates[0]
    raise InstallError(f"no unit files under {where}/systemd: install from a source checkout "
                       "(pip install -e DIR) or pass --source DIR")


def console_script() -> str:
    """The absolute path of this installation's `mqtt-gateway` script."""
    beside = Path(sys.executable).parent / "mqtt-gateway"
    if beside.is_file():
        return str(beside)
    found = shutil.which("mqtt-gateway")
    if found:
        return str(Path(found).resolve())
    raise InstallError(f"no mqtt-gateway script beside {sys.executable} or on PATH: "
                       "install the package (pip install DIR) first")


def render_unit(text: str, executable: str, user: str) -> str:
    """A unit file with this installation's script and user in it."""
    text = text.replace(DEFAULT_EXEC, executable)
    text = re.sub(r"(?m)^(User|Group)=.*$", lambda m: f"{m.group(1)}={user}", text)
    return text


def render_sysusers(text: str, user: str) -> str:
    """The sysusers.d snippet for `user`."""
    return re.sub(rf"(?m)^([um]) {re.escape(DEFAULT_USER)}\b", rf"\1 {user}", text)


def install_plan(root: Path, source: Path, executable: str, user: str) -> list[FileAction]:
    """Every file install-service writes under `root`."""
    actions = [FileAction(root / "etc/systemd/system" / unit,
                          render_unit((source / "systemd" / unit).read_text(encoding="utf-8"),
                                      executable, user))
               for unit in UNITS]
    actions.append(FileAction(root / "etc/sysusers.d" / SYSUSERS, render_sysusers(
        (source / "systemd/sysusers.d" / SYSUSERS).read_text(encoding="utf-8"), user)))
    actions += [FileAction(root / "etc/mqtt-gateway" / name,
                           service_config((source / "config" / name).read_text(encoding="utf-8")),
                           keep_existing=True)
                for name in CONFIGS]
    return actions


def service_config(text: str) -> str:
    """An example config with its relative state paths moved to the StateDirectory."""
    text = re.sub(r"(?m)^(\s*state_dir:\s*)\./state\b", r"\1/var/lib/mqtt-gateway", text)
    return re.sub(r"(?m)^(database:\s*)\./consumer\.sqlite\b",
                  r"\1/var/lib/mqtt-gateway-consumer/consumer.sqlite", text)


def uninstall_plan(root: Path) -> list[FileAction]:
    """Every file uninstall-service removes under `root`."""
    return [FileAction(root / "etc/systemd/system" / unit, None) for unit in UNITS] + \
        [FileAction(root / "etc/sysusers.d" / SYSUSERS, None)]


def apply(actions: list[FileAction], dry_run: bool) -> list[str]:
    """Carry out the plan; one line per file saying what happened."""
    lines = []
    for action in actions:
        verb = "would " if dry_run else ""
        if action.text is None:
            if action.path.exists():
                if not dry_run:
                    action.path.unlink()
                lines.append(f"{verb}remove {action.path}")
            continue
        if action.keep_existing and action.path.exists():
            lines.append(f"kept {action.path} (it exists; the example was not copied over it)")
            continue
        if not dry_run:
            action.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = action.path.with_name(action.path.name + ".tmp")
            tmp.write_text(action.text, encoding="utf-8")
            tmp.chmod(0o644)
            os.replace(tmp, action.path)
        lines.append(f"{verb}write {action.path}")
    return lines


def create_user(root: Path, dry_run: bool) -> str:
    """Apply the sysusers.d snippet under `root`; one line saying what happened."""
    tool = shutil.which("systemd-sysusers")
    snippet = root / "etc/sysusers.d" / SYSUSERS
    if tool is None:
        return (f"systemd-sysusers not found: create the user by hand as {snippet} describes "
                "(useradd --system ...)")
    command = [tool, *([] if root == Path("/") else ["--root", str(root)]), str(snippet)]
    if dry_run:
        return "would run " + " ".join(command)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InstallError(f"{' '.join(command)} failed: {done.stderr.strip() or done.returncode}")
    return "ran " + " ".join(command)


def next_steps(root: Path, user: str) -> str:
    """What the operator does after installing."""
    prefix = "" if root == Path("/") else f" (installed under {root}; paths below are on the target)"
    return f"""next steps{prefix}:
  1. edit /etc/mqtt-gateway/gateway.yaml (devices, broker.url) and check it:
       mqtt-gateway check --config /etc/mqtt-gateway/gateway.yaml
  2. a broker password: put it in /etc/mqtt-gateway/broker-password (mode 0600, root),
     set broker.username and broker.password_file: broker-password in the config, and add
       LoadCredential=broker-password:/etc/mqtt-gateway/broker-password
     with `systemctl edit mqtt-gateway`
  3. systemctl daemon-reload
  4. systemctl enable --now mqtt-gateway      (the consumer: mqtt-gateway-consumer)
  5. systemctl status mqtt-gateway; journalctl -u mqtt-gateway -f
     mqtt-gateway status --config /etc/mqtt-gateway/gateway.yaml   (as {user} or root)
  reload the device map after editing it: systemctl reload mqtt-gateway"""
