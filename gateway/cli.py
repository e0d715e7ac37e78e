"""The `mqtt-gateway` command line (docs/contracts.md, "Command line").

Exit codes: 0 success, 1 runtime or validation failure, 2 usage error.
Without --config, the everyday commands use the installed config
(/etc/mqtt-gateway/gateway.yaml, else ./gateway.yaml; `consume`: consumer.yaml)
and say which file they used (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.config.common import ConfigError
from gateway.config.credentials import (
    BrokerCredentials,
    BrokerSecrets,
    CredentialError,
    DatabaseSecret,
    load_database_password,
    load_secrets,
)
from gateway.config.starter import DRIVERS as STARTER_DRIVERS
from gateway.core.extras import MissingExtras
from gateway.core.redact import mask_secrets
from gateway.ops.command_table import DEFAULT_CONFIGS, ETC, EXAMPLES, LEVELS, SPEC
from gateway.ops.completion import FLAG, Option
from gateway.ops.install import (
    DEFAULT_USER,
    USER_NAME,
    InstallError,
    apply,
    console_script,
    create_user,
    exec_problem,
    install_plan,
    next_steps,
    set_groups,
    source_dir,
    uninstall,
)
from gateway.ops.logs import setup_logging

if TYPE_CHECKING:
    from gateway.config.consumer_config import ConsumerConfig

log = logging.getLogger("gateway")

# Each command imports the modules it needs when it runs (PLC0415 below): the gateway
# does not carry the consumer's database code, nor the consumer the store and the
# device drivers (RSS on a small device).

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-gateway", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Edge gateway: sensors -> durable SQLite outbox -> MQTT -> consumer.",
        epilog="`mqtt-gateway COMMAND --help` describes each command, with examples. "
               "Exit codes:\n0 success, 1 a failure or an invalid config, 2 a usage error.")
    parser.add_argument("--version", action="version", version=f"mqtt-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SPEC:
        sub = commands.add_parser(command.name, help=command.help, description=command.help,
                                  epilog="examples:\n" + EXAMPLES[command.name],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        for option in command.options:
            _add(sub, option)
        if command.name == "init":
            sub.add_argument("path", nargs="?", type=Path, metavar="PATH",
                             help="where to write it (default ./gateway.yaml, with "
                             "--consumer ./consumer.yaml)")
        if command.name == "completion":
            sub.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    return parser


def _add(sub: argparse.ArgumentParser, option: Option) -> None:
    if option.value == FLAG:
        sub.add_argument(option.name, action="store_true", help=option.help)
    elif option.name == "--log-level":
        sub.add_argument(option.name, default="INFO", choices=LEVELS, help=option.help)
    elif option.name == "--root":
        sub.add_argument(option.name, type=Path, default=Path("/"), metavar="DIR",
                         help=option.help)
    elif option.name == "--user":
        sub.add_argument(option.name, default=DEFAULT_USER, metavar="NAME", help=option.help)
    elif option.name == "--driver":
        sub.add_argument(option.name, choices=STARTER_DRIVERS, metavar="DRIVER",
                         help=f"{option.help}: {', '.join(STARTER_DRIVERS)}")
    else:
        sub.add_argument(option.name, type=Path, help=option.help,
                         metavar={"--exec": "PATH"}.get(option.name, str(option.value).upper()))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "install-service" and not USER_NAME.fullmatch(args.user):
        parser.error(f"argument --user: {args.user!r} is not a user name "
                     "(lower-case letters, digits, '_' or '-', up to 31)")
    if args.command == "init" and args.consumer and args.driver:
        parser.error("argument --consumer: a consumer config has no devices (no --driver)")
    try:
        if args.command in ("install-service", "uninstall-service"):
            return _service_files(args)
        if args.command == "init":
            return _init(args.path, args.driver, args.consumer)
        if args.command == "completion":
            return _completion(args.shell)
        path = _config_path(args.config, {"consume": "consumer", "run": "gateway"}.get(
            args.command, "either"))
        if path is None:
            return 1
        if args.command == "check":
            return _check(path)
        if args.command == "status":
            return _status(path, args.json)
        if not _right_kind(path, args.command):
            return 1
        if args.command == "run":
            return _run(path, args.log_level)
        return _consume(path, args.log_level)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return 1
    except MissingExtras as exc:  # one line each, naming the extra to install
        _print_problems(exc.lines)
        return 1
    except KeyboardInterrupt:
        return 1


def _config_path(given: Path | None, kind: str) -> Path | None:
    """--config, else the first default that exists (saying so); None after saying why not."""
    if given is not None:
        return given
    candidates = DEFAULT_CONFIGS[kind]
    for path in candidates:
        if path.is_file():
            print(f"using {path} (no --config given)", file=sys.stderr)
            return path
    names = [str(p) if p.is_absolute() else f"./{p}" for p in candidates]
    tried = f"neither {names[0]} nor {names[1]}" if len(names) == 2 else \
        f"none of {', '.join(names[:-1])} or {names[-1]}"
    flag = " --consumer" if kind == "consumer" else ""
    print(f"error: no --config given and {tried} exists: pass --config FILE, or "
          f"write a starter config with `mqtt-gateway init{flag}`", file=sys.stderr)
    return None


def _right_kind(path: Path, command: str) -> bool:
    """`run` needs a gateway config and `consume` a consumer config; say so otherwise."""
    from gateway.config.check import config_kind  # noqa: PLC0415

    kind = config_kind(path)
    wanted, other = ("gateway", "consume") if command == "run" else ("consumer", "run")
    if kind == wanted:
        return True
    print(f"error: {path} is a {kind} config: use `mqtt-gateway {other} --config {path}` "
          f"(`{command}` needs a {wanted} config)", file=sys.stderr)
    return False


def _print_problems(problems: Sequence[object]) -> None:
    count = len(problems)
    for problem in problems:
        print(mask_secrets(f"error: {problem}"), file=sys.stderr)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


def _check(path: Path) -> int:
    from devices.registry import DRIVERS  # noqa: PLC0415
    from gateway.config.check import check_file, check_warnings  # noqa: PLC0415

    warnings: list[str] = []
    kind, summary = check_file(path, DRIVERS, warnings)
    for warning in [*warnings, *check_warnings(path, DRIVERS)]:
        print(mask_secrets(f"warning: {warning}"), file=sys.stderr)
    print(mask_secrets(f"{path}: valid {kind} config: {summary}"))
    return 0


def _init(path: Path | None, driver: str | None, consumer: bool) -> int:
    from gateway.config.starter import starter  # noqa: PLC0415
    from gateway.ops.install import service_config  # noqa: PLC0415

    target = path or Path("consumer.yaml" if consumer else "gateway.yaml")
    text = starter(driver, consumer, str(target))
    if target.resolve().parent == ETC:  # the service's config: its state in StateDirectory=
        text = service_config(text)
    try:
        with target.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        print(f"error: {target} exists; not overwritten (edit it, or name another file: "
              "mqtt-gateway init [--driver D] PATH)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    what = "consumer config" if consumer else f"gateway config (driver {driver or 'simulator'})"
    print(f"wrote {target}: a starter {what}; edit it, then: "
          f"mqtt-gateway check --config {target}")
    return 0


def _completion(shell: str) -> int:
    from gateway.ops.completion import bash_script, zsh_script  # noqa: PLC0415

    sys.stdout.write(bash_script(SPEC) if shell == "bash" else zsh_script(SPEC))
    return 0


def _status(path: Path, as_json: bool) -> int:
    from gateway.config.check import config_kind  # noqa: PLC0415

    if config_kind(path) == "consumer":
        return _consumer_status(path, as_json)
    from devices.registry import DRIVERS  # noqa: PLC0415
    from gateway.config.gateway_config import load_gateway_config  # noqa: PLC0415
    from gateway.edge.status import StatusError, read_status, render_status  # noqa: PLC0415

    config = load_gateway_config(path, DRIVERS)
    try:
        report = read_status(config)
    except StatusError as exc:
        print(mask_secrets(f"error: {exc}"), file=sys.stderr)
        return 1
    print(mask_secrets(json.dumps(report, indent=2) if as_json else render_status(report)))
    return 0


def _consumer_status(path: Path, as_json: bool) -> int:
    from gateway.cloud.status import (  # noqa: PLC0415
        ConsumerStatusError,
        read_consumer_status,
        render_consumer_status,
    )
    from gateway.config.consumer_config import load_consumer_config  # noqa: PLC0415

    config = load_consumer_config(path)
    try:
        password = load_database_password(config.database_password_file, str(path)).password
        report = read_consumer_status(config, password)
    except CredentialError as exc:
        _print_problems(exc.problems)
        return 1
    except ConsumerStatusError as exc:
        print(mask_secrets(f"error: {exc}"), file=sys.stderr)
        return 1
    print(mask_secrets(json.dumps(report, indent=2) if as_json
                       else render_consumer_status(report)))
    return 0


def _secrets(credentials: BrokerCredentials) -> BrokerSecrets | None:
    """The broker secrets, or None after logging why a file cannot be used."""
    try:
        secrets = load_secrets(credentials)
    except CredentialError as exc:
        for problem in exc.problems:
            log.error("cannot start: %s", problem)
        return None
    for warning in secrets.warnings:
        log.warning("%s", warning)
    return secrets


def _database_secret(config: ConsumerConfig) -> DatabaseSecret | None:
    """The consumer's database password, or None after logging why its file cannot be used."""
    try:
        secret = load_database_password(config.database_password_file, str(config.path))
    except CredentialError as exc:
        for problem in exc.problems:
            log.error("cannot start: %s", problem)
        return None
    for warning in secret.warnings:
        log.warning("%s", warning)
    return secret


def _run(path: Path, level: str) -> int:
    from devices.registry import DRIVERS  # noqa: PLC0415
    from gateway.config.check import require_extras  # noqa: PLC0415
    from gateway.config.gateway_config import load_gateway_config  # noqa: PLC0415
    from gateway.edge.serve import serve  # noqa: PLC0415
    from gateway.store.outbox import Outbox  # noqa: PLC0415
    from gateway.store.sql import StoreError  # noqa: PLC0415

    setup_logging(level)
    config = load_gateway_config(path, DRIVERS)
    require_extras(config, DRIVERS)
    secrets = _secrets(config.broker.credentials)
    if secrets is None:
        return 1
    try:
        outbox = Outbox.open(config.store_path, config.gateway_id,
                             durability=config.store.durability, max_bytes=config.store.max_bytes)
    except StoreError as exc:
        log.error("%s", exc)
        return 1
    clean = ok = marked = False
    try:
        ok = asyncio.run(serve(config, outbox, secrets, __version__))
        # A task that died (a damaged page of the store, say) is no clean stop: the next
        # start begins a new epoch and checks the whole store (gateway/store/opening.py).
        clean = ok
    finally:
        marked = outbox.close(clean=clean)
    if marked:  # when not, the store said why
        log.info("store %s closed cleanly; epoch %s continues at the next start",
                 config.store_path, outbox.epoch)
    return 0 if ok else 1


def _consume(path: Path, level: str) -> int:
    from gateway.cloud.consumer import consume  # noqa: PLC0415
    from gateway.config.check import require_extras  # noqa: PLC0415
    from gateway.config.consumer_config import load_consumer_config  # noqa: PLC0415

    setup_logging(level)
    config = load_consumer_config(path)
    require_extras(config, {})
    secrets = _secrets(config.credentials)
    database = _database_secret(config)
    if secrets is None or database is None:
        return 1
    return consume(config, secrets, database.password)


def _service_files(args: argparse.Namespace) -> int:
    root: Path = args.root.resolve()
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        print("error: installing into / needs root (sudo), or use --root DIR", file=sys.stderr)
        return 1
    try:
        if args.command == "uninstall-service":
            for line in uninstall(root, args.dry_run):
                print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
            return 0
        executable = str(args.exec) if args.exec is not None else console_script()
        if not Path(executable).is_absolute():
            raise InstallError(f"--exec {executable}: give an absolute path")
        problem = exec_problem(executable)
        if problem is not None and root == Path("/"):
            raise InstallError(problem)
        if problem is not None:  # under --root the target may lay it out otherwise
            print(f"warning: {problem}", file=sys.stderr)
        plan = install_plan(root, source_dir(args.source), executable, args.user)
        for line in apply(plan, args.dry_run):
            print(line)
        print(create_user(root, args.dry_run))
        for line in set_groups(plan, root, args.dry_run):
            print(line)
    except (InstallError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(next_steps(root, args.user, executable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
