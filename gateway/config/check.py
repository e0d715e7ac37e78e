"""`mqtt-gateway check`: validate a gateway or a consumer config file.

Besides the file itself, `check` looks at what this installation must have
to run it: the credential files readable, and the optional library of each
driver (and of a PostgreSQL database) importable, naming the extra to
install when it is not.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config.common import ConfigError
from gateway.config.consumer_config import ConsumerConfig, is_postgres_url, load_consumer_config
from gateway.config.credentials import BrokerCredentials, CredentialError, load_secrets
from gateway.config.gateway_config import DriverTable, GatewayConfig, load_gateway_config
from gateway.config.reader import Problem
from gateway.config.yaml_source import load_located
from gateway.core.extras import POSTGRES, MissingExtras


def config_kind(path: Path) -> str:
    """`consumer` when the file has a top-level `database:` key, else `gateway`."""
    try:
        root, _ = load_located(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError):
        return "gateway"  # the gateway loader reports what is wrong with the file
    if root is not None and isinstance(root.value, dict) and "database" in root.value \
            and "devices" not in root.value:
        return "consumer"
    return "gateway"


def check_file(path: Path, drivers: DriverTable) -> tuple[str, str]:
    """The kind of config and a one-line summary of it.

    Raises:
        ConfigError: listing every problem in the file.
        MissingExtras: naming each optional library the config needs and cannot import.
    """
    if config_kind(path) == "consumer":
        consumer = load_consumer_config(path)
        _check_secrets(consumer.credentials)
        require_extras(consumer, drivers)
        return "consumer", f"broker {consumer.endpoints}, subscribe {consumer.subscribe}, " \
                           f"database {consumer.database_label}"
    config = load_gateway_config(path, drivers)
    _check_secrets(config.broker.credentials)
    require_extras(config, drivers)
    streams = sum(len(d.streams) for d in config.devices)
    return "gateway", (f"gateway {config.gateway_id}, {len(config.devices)} devices, "
                       f"{streams} streams, broker {config.broker.endpoints}")


def _check_secrets(credentials: BrokerCredentials) -> None:
    """The credential files must be readable now (by whoever runs `check`)."""
    try:
        load_secrets(credentials)
    except CredentialError as exc:
        raise ConfigError(exc.problems) from exc


def missing_extras(config: GatewayConfig | ConsumerConfig, drivers: DriverTable) -> list[str]:
    """One line for each optional library `config` needs that cannot be imported here,
    naming the extra that brings it (empty when everything is installed)."""
    if isinstance(config, ConsumerConfig):
        why = POSTGRES.missing("a postgresql:// database") if is_postgres_url(config.database) \
            else None
        return [why] if why is not None else []
    lines = []
    for device in config.devices:
        extra = drivers[device.driver].extra
        why = None if extra is None else extra.missing(f"device {device.id}: driver {device.driver}")
        if why is not None:
            lines.append(why)
    return lines


def require_extras(config: GatewayConfig | ConsumerConfig, drivers: DriverTable) -> None:
    """Raise `MissingExtras` when `missing_extras` finds any."""
    lines = missing_extras(config, drivers)
    if lines:
        raise MissingExtras(lines)


def problems_in(path: Path, drivers: DriverTable) -> list[Problem]:
    """Every problem `check` would print for a file (empty when it is valid)."""
    try:
        check_file(path, drivers)
    except ConfigError as exc:
        return exc.problems
    return []
