"""`mqtt-gateway install-service` and `uninstall-service`: units, user and config under a root.

Install writes, under `root` (/ by default; another directory for packaging
and tests):

- `etc/systemd/system/mqtt-gateway.service` and `mqtt-gateway-consumer.service`,
  with ExecStart pointing at this installation's console script and the
  chosen user;
- `etc/sysusers.d/mqtt-gateway.conf` (the service user, in groups dialout,
  gpio and i2c), applied with `systemd-sysusers --root ROOT` when that tool exists;
- `etc/mqtt-gateway/gateway.yaml` and `consumer.yaml` from the examples,
  never over an existing file;
- `usr/local/share/doc/mqtt-gateway/`: README.md (the units' `Documentation=`),
  LICENSE, docs/ and every example config under config/.

The files come from the package itself (`gateway/ops/shipped`, copied there
when the wheel is built, see setup.py), or, in an editable install, from the
checkout the package lives in, or from `--source DIR`.

The service runs with PrivateTmp=yes and ProtectHome=yes, so a program under
/tmp, /var/tmp, /home, /root or /run/user (a clone, a venv in a home
directory) is invisible to it: installing into / refuses such an ExecStart
(`exec_problem`), saying how to install the program where the service sees it.

Uninstall stops and disables the services first (on / with systemctl), then
removes the units, their `*.wants/` links, the sysusers snippet and the
documentation; config, state and the user stay (it says so). Plans are pure
data; `apply` does the file work.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from gateway.core.errors import MqttGatewayError

UNITS = ("mqtt-gateway.service", "mqtt-gateway-consumer.service")
SYSUSERS = "mqtt-gateway.conf"
CONFIGS = ("gateway.yaml", "consumer.yaml")
DOC_DIR = Path("usr/local/share/doc/mqtt-gateway")
DOCS = ("README.md", "LICENSE")  # and docs/*.md, config/*.yaml
DEFAULT_USER = "mqtt-gateway"
DEFAULT_EXEC = "/usr/local/bin/mqtt-gateway"
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
# Directories the units hide from the service, and the setting that hides each.
HIDDEN = (("/tmp", "PrivateTmp=yes"), ("/var/tmp", "PrivateTmp=yes"),
          ("/home", "ProtectHome=yes"), ("/root", "ProtectHome=yes"),
          ("/run/user", "ProtectHome=yes"))
SHEBANG_BYTES = 256
HOW_TO_INSTALL = ("install the program where the service can run it: "
                  "sudo python3 -m venv /opt/mqtt-gateway && "
                  "sudo /opt/mqtt-gateway/bin/pip install DIR && "
                  "sudo /opt/mqtt-gateway/bin/mqtt-gateway install-service; "
                  "or pass --exec PATH (an installed mqtt-gateway outside those directories)")


class InstallError(MqttGatewayError):
    """The install cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class FileAction:
    """One file to write (`text`) or to remove (`text` None)."""

    path: Path
    text: str | None
    keep_existing: bool = False  # a config: written only when absent
    mode: int = 0o644
    group: str | None = None  # the group that may read it (with mode 0640)


def source_dir(given: Path | None = None) -> Traversable:
    """Where systemd/ and config/ are: `given`; else the copy inside the installed package;
    else the checkout of an editable install."""
    if given is not None:
        if (given / "systemd" / UNITS[0]).is_file():
            return given
        raise InstallError(f"no unit files under {given}/systemd: --source must name a source "
                           "checkout holding systemd/ and config/")
    shipped = files("gateway.ops") / "shipped"
    checkout = Path(__file__).resolve().parents[2]
    for base in (shipped, checkout):
        if base.joinpath("systemd", UNITS[0]).is_file():
            return base
    raise InstallError(f"no unit files in this installation ({shipped}/systemd) nor in a checkout "
                       f"at {checkout}: reinstall the package from a wheel or sdist, or pass "
                       "--source DIR (a source checkout)")


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


def hidden_by(path: str) -> tuple[str, str] | None:
    """The hidden directory `path` is under and the unit setting that hides it, or None."""
    for prefix, setting in HIDDEN:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix, setting
    return None


def interpreter(script: Path) -> str | None:
    """The interpreter of a `#!` script (the first word after `#!`), or None."""
    try:
        with script.open("rb") as f:
            head = f.read(SHEBANG_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    return words[0] if words else None


def exec_problem(executable: str) -> str | None:
    """Why the service could not run `executable` (or the interpreter its `#!` line names),
    with what to do instead; None when it can."""
    candidates = [("ExecStart", executable), ("ExecStart (resolved)",
                                              str(Path(executable).resolve()))]
    found = interpreter(Path(executable))
    if found is not None:  # a venv's python is often a link to one in a home directory
        candidates += [(f"the interpreter of {executable}", found),
                       (f"the interpreter of {executable} (resolved)", str(Path(found).resolve()))]
    for what, path in candidates:
        hidden = hidden_by(path)
        if hidden is not None:
            prefix, setting = hidden
            return (f"{what} would be {path}, under {prefix}, which the service cannot see "
                    f"({setting} in the unit): {HOW_TO_INSTALL}")
    return None


def render_unit(text: str, executable: str, user: str) -> str:
    """A unit file with this installation's script and user in it."""
    text = text.replace(DEFAULT_EXEC, executable)
    text = re.sub(r"(?m)^(User|Group)=.*$", lambda m: f"{m.group(1)}={user}", text)
    return text


def render_sysusers(text: str, user: str) -> str:
    """The sysusers.d snippet for `user`."""
    return re.sub(rf"(?m)^([um]) {re.escape(DEFAULT_USER)}\b", rf"\1 {user}", text)


def _text(source: Traversable, *parts: str) -> str:
    return source.joinpath(*parts).read_text(encoding="utf-8")


def install_plan(root: Path, source: Traversable, executable: str, user: str) -> list[FileAction]:
    """Every file install-service writes under `root`."""
    actions = [FileAction(root / "etc/systemd/system" / unit,
                          render_unit(_text(source, "systemd", unit), executable, user))
               for unit in UNITS]
    actions.append(FileAction(root / "etc/sysusers.d" / SYSUSERS, render_sysusers(
        _text(source, "systemd", "sysusers.d", SYSUSERS), user)))
    # consumer.yaml may hold a database URL: readable by root and the service's group only.
    actions += [FileAction(root / "etc/mqtt-gateway" / name,
                           service_config(_text(source, "config", name)), keep_existing=True,
                           mode=0o640 if name == "consumer.yaml" else 0o644,
                           group=user if name == "consumer.yaml" else None)
                for name in CONFIGS]
    actions += [FileAction(root / DOC_DIR / name, _text(source, *name.parts))
                for name in doc_files(source)]
    return actions


def doc_files(source: Traversable) -> list[Path]:
    """The documentation install-service copies, relative to `source`: README.md, LICENSE,
    docs/*.md and config/*.yaml (what is there of them)."""
    names = [Path(name) for name in DOCS if source.joinpath(name).is_file()]
    for folder, suffix in (("docs", ".md"), ("config", ".yaml")):
        if source.joinpath(folder).is_dir():
            names += sorted(Path(folder, entry.name) for entry in source.joinpath(folder).iterdir()
                            if entry.is_file() and entry.name.endswith(suffix))
    return names


def service_config(text: str) -> str:
    """An example config with its relative state paths moved to the StateDirectory."""
    text = re.sub(r"(?m)^(\s*state_dir:\s*)\./state\b", r"\1/var/lib/mqtt-gateway", text)
    return re.sub(r"(?m)^(database:\s*)\./consumer\.sqlite\b",
                  r"\1/var/lib/mqtt-gateway-consumer/consumer.sqlite", text)


def uninstall_plan(root: Path) -> list[FileAction]:
    """Every file uninstall-service removes under `root`: the `*.wants/` links to the units
    (what `systemctl enable` made), the units, the sysusers snippet and whatever is in the
    documentation directory."""
    docs = root / DOC_DIR
    system = root / "etc/systemd/system"
    links = sorted(link for unit in UNITS for link in system.glob(f"*.wants/{unit}"))
    return [FileAction(link, None) for link in links] + \
        [FileAction(system / unit, None) for unit in UNITS] + \
        [FileAction(root / "etc/sysusers.d" / SYSUSERS, None)] + \
        [FileAction(path, None) for path in sorted(docs.rglob("*")) if not path.is_dir()]


def systemctl(args: list[str], dry_run: bool) -> str | None:
    """Run `systemctl ARGS` when systemctl is there; one line saying what happened (a
    failure is a warning: the files are removed anyway), None when there is no systemctl."""
    tool = shutil.which("systemctl")
    if tool is None:
        return None
    command = [tool, *args]
    if dry_run:
        return "would run " + " ".join(command)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"warning: {' '.join(command)} failed: {why[0]}"
    return "ran " + " ".join(command)


def stop_services(root: Path, dry_run: bool) -> list[str]:
    """Before the units go: `systemctl disable --now` those installed on /; under another
    root `systemctl --root=DIR disable` (offline: it removes the `*.wants/` links)."""
    units = [unit for unit in UNITS if (root / "etc/systemd/system" / unit).exists()]
    if not units:
        return []
    args = ["disable", "--now"] if root == Path("/") else [f"--root={root}", "disable"]
    line = systemctl([*args, *units], dry_run)
    return [] if line is None else [line]


def uninstall(root: Path, dry_run: bool) -> list[str]:
    """Stop and disable (on /), remove the files, daemon-reload (on /); what was done."""
    lines = stop_services(root, dry_run)
    lines += apply(uninstall_plan(root), dry_run)
    lines += [] if dry_run else prune(root / DOC_DIR)
    reload = systemctl(["daemon-reload"], dry_run) if root == Path("/") else None
    lines += [] if reload is None else [reload]
    todo = "" if reload is not None else "; on the target, run systemctl daemon-reload"
    lines.append(f"kept {root / 'etc/mqtt-gateway'} (config), {root / 'var/lib/mqtt-gateway'} "
                 f"and {root / 'var/lib/mqtt-gateway-consumer'} (state) and the service "
                 f"user{todo}")
    return lines


def prune(directory: Path) -> list[str]:
    """Remove `directory` and the directories under it when they hold no file any more
    (after uninstall removed the documentation); one line per directory removed."""
    if not directory.is_dir() or any(not p.is_dir() for p in directory.rglob("*")):
        return []
    lines = []
    for path in [*sorted(directory.rglob("*"), reverse=True), directory]:
        path.rmdir()
        lines.append(f"remove {path}/")
    return lines


def apply(actions: list[FileAction], dry_run: bool) -> list[str]:
    """Carry out the plan; one line per file saying what happened."""
    lines = []
    for action in actions:
        verb = "would " if dry_run else ""
        if action.text is None:
            if os.path.lexists(action.path):  # a dangling link too
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
            tmp.chmod(action.mode)
            os.replace(tmp, action.path)
        lines.append(f"{verb}write {action.path}")
    return lines


def set_groups(actions: list[FileAction], root: Path, dry_run: bool) -> list[str]:
    """Give the files of the plan that name a group (just written: still root's group) to
    that group, once the service user exists; one line per file."""
    lines = []
    for action in actions:
        if action.group is None or action.text is None:
            continue
        try:
            st = action.path.stat()
        except OSError:
            continue  # a dry run
        if st.st_gid != 0 or stat.S_IMODE(st.st_mode) != action.mode:
            continue  # kept from before: the operator's
        how = f"chgrp {action.group} {action.path.relative_to(root).as_posix()}"
        if dry_run:
            lines.append(f"would {how}")
            continue
        try:
            os.chown(action.path, -1, _group_id(root, action.group))
            lines.append(f"{how} (mode {action.mode:04o})")
        except (KeyError, OSError):
            lines.append(f"on the target: {how} (so that the service can read it; mode "
                         f"{action.mode:04o})")
    return lines


def _group_id(root: Path, name: str) -> int:
    """The id of group `name` on the system installed under `root`.

    Raises:
        KeyError: there is no such group (yet).
    """
    if root == Path("/"):
        return grp.getgrnam(name).gr_gid
    try:
        lines = (root / "etc/group").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise KeyError(name)


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


def next_steps(root: Path, user: str, executable: str = DEFAULT_EXEC) -> str:
    """What the operator does after installing (with the full path of the program: sudo's
    PATH may not hold it)."""
    prefix = "" if root == Path("/") else f" (installed under {root}; paths below are on the target)"
    return f"""next steps{prefix}:
  1. edit /etc/mqtt-gateway/gateway.yaml (devices, broker.url) and check it:
       sudo {executable} check
  2. a broker password: put it in /etc/mqtt-gateway/broker-password (mode 0600, root),
     set broker.username and broker.password_file: broker-password in the config, and add
       LoadCredential=broker-password:/etc/mqtt-gateway/broker-password
     with `systemctl edit mqtt-gateway`
  3. systemctl daemon-reload
  4. systemctl enable --now mqtt-gateway      (the consumer: mqtt-gateway-consumer)
  5. systemctl status mqtt-gateway; journalctl -u mqtt-gateway -f
     sudo -u {user} {executable} status   (or as root: sudo {executable} status)
  reload the device map after editing it: systemctl reload mqtt-gateway"""
