"""The `mqtt-gateway` command line (docs/contracts.md, "Command line").

Exit codes: 0 success, 1 runtime or validation failure, 2 usage error.
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

from gateway import __version__
from gateway.config.common import ConfigError
from gateway.config.credentials import BrokerCredentials, BrokerSecrets, CredentialError, load_secrets
from gateway.core.extras import MissingExtras
from gateway.ops.install import (
    DEFAULT_USER,
    DOC_DIR,
    USER_NAME,
    InstallError,
    apply,
    console_script,
    create_user,
    install_plan,
    next_steps,
    prune,
    source_dir,
    uninstall_plan,
)
from gateway.ops.logs import setup_logging

log = logging.getLogger("gateway")

# Each command imports the modules it needs when it runs (PLC0415 below): the gateway
# does not carry the consumer's database code, nor the consumer the store and the
# device drivers (RSS on a small device).


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-gateway",
        description="Edge gateway: sensors -> durable SQLite outbox -> MQTT -> consumer.",
    )
    parser.add_argument("--version", action="version", version=f"mqtt-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the gateway in the foreground (what systemd runs)"),
        ("check", "validate a gateway or consumer config and print every problem"),
        ("status", "show the gateway's store (backlog, seqs, epoch, drops, size), or with a "
         "consumer config what the consumer stored per stream"),
        ("consume", "run the cloud-side deduplicating consumer"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", required=True, type=Path, metavar="FILE",
                         help="the YAML config file")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print JSON")
        if name in ("run", "consume"):
            sub.add_argument("--log-level", default="INFO",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    for name, text in (
        ("install-service", "install the systemd units, the service user and example configs"),
        ("uninstall-service", "remove the systemd units (config, state and user stay)"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                         help="install under this directory instead of / (packaging, tests)")
        sub.add_argument("--dry-run", action="store_true", help="print what would be done")
        if name == "install-service":
            sub.add_argument("--user", default=DEFAULT_USER, metavar="NAME",
                             help=f"the service user (default {DEFAULT_USER})")
            sub.add_argument("--source", type=Path, metavar="DIR",
                             help="a source checkout holding systemd/ and config/ (default: "
                             "the copies inside the installed package)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "install-service" and not USER_NAME.fullmatch(args.user):
        parser.error(f"argument --user: {args.user!r} is not a user name "
                     "(lower-case letters, digits, '_' or '-', up to 31)")
    try:
        if args.command in ("install-service", "uninstall-service"):
            return _service_files(args)
        if args.command == "check":
            return _check(args.config)
        if args.command == "status":
            return _status(args.config, args.json)
        if args.command == "run":
            return _run(args.config, args.log_level)
        return _consume(args.config, args.log_level)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return 1
    except MissingExtras as exc:  # one line each, naming the extra to install
        _print_problems(exc.lines)
        return 1
    except KeyboardInterrupt:
        return 1


def _print_problems(problems: Sequence[object]) -> None:
    count = len(problems)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


def _check(path: Path) -> int:
    from devices.registry import DRIVERS  # noqa: PLC0415
    from gateway.config.check import check_file  # noqa: PLC0415

    kind, summary = check_file(path, DRIVERS)
    print(f"{path}: valid {kind} config: {summary}")
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else render_status(report))
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
        report = read_consumer_status(config)
    except ConsumerStatusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else render_consumer_status(report))
    return 0


def _secrets(credentials: BrokerCredentials) -> BrokerSecrets | None:
    """The broker secrets, or None after logging why a file cannot be used."""
    try:
        return load_secrets(credentials)
    except CredentialError as exc:
        for problem in exc.problems:
            log.error("cannot start: %s", problem)
        return None


def _run(path: Path, level: str) -> int:
    from devices.registry import DRIVERS  # noqa: PLC0415
    from gateway.config.check import require_extras  # noqa: PLC0415
    from gateway.config.gateway_config import load_gateway_config  # noqa: PLC0415
    from gateway.edge.service import serve  # noqa: PLC0415
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
        ok = asyncio.run(serve(config, outbox, secrets))
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
    if secrets is None:
        return 1
    return consume(config, secrets)


def _service_files(args: argparse.Namespace) -> int:
    root: Path = args.root.resolve()
    if root == Path("/") and not args.dry_run and os.geteuid() != 0:
        print("error: installing into / needs root (sudo), or use --root DIR", file=sys.stderr)
        return 1
    try:
        if args.command == "uninstall-service":
            for line in apply(uninstall_plan(root), args.dry_run):
                print(line)
            for line in [] if args.dry_run else prune(root / DOC_DIR):
                print(line)
            print(f"kept {root / 'etc/mqtt-gateway'} (config), {root / 'var/lib/mqtt-gateway'} "
                  f"and {root / 'var/lib/mqtt-gateway-consumer'} (state) and the service user; "
                  "stop the services first (systemctl disable --now mqtt-gateway "
                  "mqtt-gateway-consumer), then run systemctl daemon-reload")
            return 0
        plan = install_plan(root, source_dir(args.source), console_script(), args.user)
        for line in apply(plan, args.dry_run):
            print(line)
        print(create_user(root, args.dry_run))
    except (InstallError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(next_steps(root, args.user))
    return 0


if __name__ == "__main__":
    sys.exit(main())
