"""The `mqtt-gateway` command line (DESIGN.md section 3.1).

Exit codes: 0 success, 1 runtime or validation failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from gateway import __version__
from gateway.config import load_gateway_config
from gateway.config_check import check_file
from gateway.config_common import ConfigError
from gateway.consumer import consume
from gateway.consumer_config import load_consumer_config
from gateway.logs import setup_logging
from gateway.service import serve
from gateway.status import StatusError, read_status, render_status
from gateway.store import Outbox
from gateway.store_sql import StoreError

log = logging.getLogger("gateway")


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
        ("status", "show the store: backlog, seqs, epoch, drops, size"),
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "status":
            return _status(args.config, args.json)
        if args.command == "run":
            return _run(args.config, args.log_level)
        return _consume(args.config, args.log_level)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except KeyboardInterrupt:
        return 1


def _print_problems(exc: ConfigError) -> None:
    count = len(exc.problems)
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


def _check(path: Path) -> int:
    kind, summary = check_file(path)
    print(f"{path}: valid {kind} config: {summary}")
    return 0


def _status(path: Path, as_json: bool) -> int:

    config = load_gateway_config(path)
    try:
        report = read_status(config)
    except StatusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else render_status(report))
    return 0


def _run(path: Path, level: str) -> int:

    setup_logging(level)
    config = load_gateway_config(path)
    try:
        outbox = Outbox.open(config.store_path, config.gateway_id,
                             durability=config.store.durability, max_bytes=config.store.max_bytes)
    except StoreError as exc:
        log.error("%s", exc)
        return 1
    clean = ok = marked = False
    try:
        ok = asyncio.run(serve(config, outbox))
        clean = True
    finally:
        marked = outbox.close(clean=clean)
    if marked:  # when not, the store said why
        log.info("store %s closed cleanly; epoch %s continues at the next start",
                 config.store_path, outbox.epoch)
    return 0 if ok else 1


def _consume(path: Path, level: str) -> int:

    setup_logging(level)
    config = load_consumer_config(path)
    return consume(config)


if __name__ == "__main__":
    sys.exit(main())
