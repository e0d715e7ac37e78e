"""The command line as an operator meets it, each case a real `python -m gateway` process:
init then check for every driver, the default config paths, the other kind of config,
the warnings of check, the help texts and the shell completion scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.cli import SPEC, _parser
from gateway.config.starter import DRIVERS as STARTER_DRIVERS
from tests.support.rig import run_cli

BASH = shutil.which("bash")


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_init_writes_a_starter_config_check_accepts(tmp_path: Path, driver: str) -> None:
    done = run_cli("init", "--driver", driver, "gw.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote gw.yaml: a starter gateway config (driver {driver})")
    text = (tmp_path / "gw.yaml").read_text()
    assert f"driver: {driver}" in text and text.count("#") >= 5  # commented
    check = run_cli("check", "--config", "gw.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "valid gateway config: gateway my-gateway, 1 devices" in check.stdout


def test_init_covers_every_driver_and_the_consumer(tmp_path: Path) -> None:
    assert sorted(STARTER_DRIVERS) == sorted(DRIVERS)
    done = run_cli("init", "--consumer", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "consumer.yaml").is_file()
    check = run_cli("check", "--config", "consumer.yaml", cwd=tmp_path)
    assert check.returncode == 0 and "valid consumer config" in check.stdout, check.stderr
    assert run_cli("init", "--consumer", "--driver", "serial", cwd=tmp_path).returncode == 2


def test_init_never_overwrites_a_file(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text("# mine\n")
    done = run_cli("init", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: gateway.yaml exists; not overwritten")
    assert (tmp_path / "gateway.yaml").read_text() == "# mine\n"


@pytest.mark.skipif(Path("/etc/mqtt-gateway").exists(),
                    reason="an installed config would be found before ./gateway.yaml")
def test_commands_without_config_use_the_default_and_say_so(tmp_path: Path) -> None:
    missing = run_cli("check", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == ("error: no --config given and none of "
                              "/etc/mqtt-gateway/gateway.yaml, ./gateway.yaml, "
                              "/etc/mqtt-gateway/consumer.yaml or ./consumer.yaml exists: pass "
                              "--config FILE, or write a starter config with `mqtt-gateway "
                              "init`\n")
    consumer = run_cli("consume", cwd=tmp_path)
    assert consumer.returncode == 1
    assert consumer.stderr.startswith("error: no --config given and neither "
                                      "/etc/mqtt-gateway/consumer.yaml nor ./consumer.yaml "
                                      "exists")
    assert "mqtt-gateway init --consumer" in consumer.stderr
    # A host with only the consumer's config: check and status find it.
    assert run_cli("init", "--consumer", cwd=tmp_path).returncode == 0
    only = run_cli("check", cwd=tmp_path)
    assert only.returncode == 0 and "valid consumer config" in only.stdout, only.stderr
    assert only.stderr.startswith("using consumer.yaml (no --config given)")
    (tmp_path / "consumer.yaml").unlink()
    assert run_cli("init", cwd=tmp_path).returncode == 0
    check = run_cli("check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stderr.startswith("using gateway.yaml (no --config given)\n")
    status = run_cli("status", cwd=tmp_path)  # the store is not there yet: it says so
    assert status.returncode == 1
    assert "using gateway.yaml" in status.stderr and "no store at" in status.stderr


def test_each_command_says_so_when_given_the_other_kind_of_config(tmp_path: Path) -> None:
    assert run_cli("init", cwd=tmp_path).returncode == 0
    assert run_cli("init", "--consumer", cwd=tmp_path).returncode == 0
    run = run_cli("run", "--config", "consumer.yaml", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == ("error: consumer.yaml is a consumer config: use `mqtt-gateway consume "
                          "--config consumer.yaml` (`run` needs a gateway config)\n")
    consume = run_cli("consume", "--config", "gateway.yaml", cwd=tmp_path)
    assert consume.returncode == 1
    assert consume.stderr.startswith("error: gateway.yaml is a gateway config: use "
                                     "`mqtt-gateway run --config gateway.yaml`")
    check = run_cli("check", "--config", "consumer.yaml", cwd=tmp_path)
    assert check.returncode == 0 and "valid consumer config" in check.stdout
    # A consumer config missing its database is still recognised by broker.subscribe.
    text = (tmp_path / "consumer.yaml").read_text()
    (tmp_path / "c2.yaml").write_text("\n".join(line for line in text.splitlines()
                                                if not line.startswith("database:")))
    run = run_cli("run", "--config", "c2.yaml", cwd=tmp_path)
    assert "is a consumer config" in run.stderr


def test_check_warns_about_an_absent_port_and_passes(tmp_path: Path) -> None:
    assert run_cli("init", "--driver", "serial", cwd=tmp_path).returncode == 0
    config = tmp_path / "gateway.yaml"
    port = tmp_path / "ttyUSB-absent"
    config.write_text(config.read_text().replace("/dev/ttyUSB0", str(port)))
    done = run_cli("check", "--config", "gateway.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"warning: climate: port {port} does not exist now (a USB sensor "
                           "may be plugged in later; ls /dev/serial/by-id/)\n")
    port.write_text("")  # present now: no warning
    again = run_cli("check", "--config", "gateway.yaml", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""


def test_check_warns_about_a_state_dir_it_cannot_write(tmp_path: Path) -> None:
    assert run_cli("init", cwd=tmp_path).returncode == 0
    config = tmp_path / "gateway.yaml"
    (tmp_path / "afile").write_text("")
    config.write_text(config.read_text().replace("state_dir: ./state", "state_dir: ./afile"))
    done = run_cli("check", "--config", "gateway.yaml", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stderr == "warning: state_dir afile is not a directory\n"
    readonly = tmp_path / "ro"
    readonly.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                              str(readonly)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        config.write_text(config.read_text().replace("state_dir: ./afile",
                                                     f"state_dir: {readonly}/state"))
        done = run_cli("check", "--config", "gateway.yaml", cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    assert done.returncode == 0
    assert done.stderr.startswith(f"warning: state_dir {readonly}/state does not exist and uid "
                                  f"{os.geteuid()} cannot create it ({readonly} is not writable)")


def test_every_command_and_option_has_help_with_examples(tmp_path: Path) -> None:
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(commands) == sorted(c.name for c in SPEC)
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
        done = run_cli(name, "--help", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "\nexamples:\n  " in done.stdout and "mqtt-gateway" in done.stdout, name
    top = run_cli("--help", cwd=tmp_path)
    for command in SPEC:
        assert f"    {command.name}" in top.stdout
    assert "Exit codes" in top.stdout


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completion_parses_and_completes(tmp_path: Path) -> None:
    assert BASH is not None
    script = tmp_path / "mqtt-gateway.bash"
    done = run_cli("completion", "bash", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    script.write_text(done.stdout)
    syntax = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True,
                            check=False)
    assert syntax.returncode == 0, syntax.stderr
    (tmp_path / "gw.yaml").write_text("")

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                 "_mqtt_gateway; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run([BASH, "-c", probe], capture_output=True, text=True, check=True,
                             cwd=tmp_path)
        return [w for w in out.stdout.splitlines() if w]

    assert complete("mqtt-gateway", "st") == ["status"]
    assert set(complete("mqtt-gateway", "")) >= {c.name for c in SPEC}
    assert complete("mqtt-gateway", "init", "--driver", "bm") == ["bme280"]
    assert sorted(complete("mqtt-gateway", "init", "--driver", "")) == sorted(DRIVERS)
    assert complete("mqtt-gateway", "run", "--log-level", "W") == ["WARNING"]
    assert complete("mqtt-gateway", "check", "--config", "gw") == ["gw.yaml"]
    assert set(complete("mqtt-gateway", "install-service", "--")) >= \
        {"--root", "--dry-run", "--user", "--exec", "--source", "--help"}
    assert complete("mqtt-gateway", "completion", "z") == ["zsh"]
    registered = subprocess.run([BASH, "-c", f"source {script}; complete -p mqtt-gateway"],
                                capture_output=True, text=True, check=True)
    assert "-F _mqtt_gateway mqtt-gateway" in registered.stdout


def test_zsh_completion_names_every_command_and_option(tmp_path: Path) -> None:
    done = run_cli("completion", "zsh", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("#compdef mqtt-gateway\n")
    for command in SPEC:
        assert f"\n    '{command.name}:" in text and f"\n        {command.name})\n" in text
        for option in command.options:
            assert f"'{option.name}[" in text, (command.name, option.name)
    zsh = shutil.which("zsh")
    if zsh is not None:
        path = tmp_path / "_mqtt-gateway"
        path.write_text(text)
        assert subprocess.run([zsh, "-n", str(path)], check=False).returncode == 0
