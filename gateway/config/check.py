"""`mqtt-gateway check`: validate a gateway or a consumer config file.

Besides the file itself, `check` looks at what this installation must have
to run it: the credential files readable, and the optional library of each
driver (and of a PostgreSQL database) importable, naming the extra to
install when it is not.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config.common import ConfigError
from gateway.config.consumer_config import ConsumerConfig, is_postgres_url, load_consumer_config
from gateway.config.credentials import (
    BrokerCredentials,
    CredentialError,
    load_database_password,
    load_secrets,
)
from gateway.config.gateway_config import DriverTable, GatewayConfig, load_gateway_config
from gateway.config.reader import Problem
from gateway.config.yaml_source import load_located, read_source
from gateway.core.extras import POSTGRES, MissingExtras


def config_kind(path: Path) -> str:
    """`consumer` when the file has a top-level `database:` key or a `broker.subscribe`
    and neither `devices:` nor `gateway:`, else `gateway`."""
    try:
        root, _ = load_located(read_source(path))
    except (OSError, UnicodeDecodeError, RecursionError):
        return "gateway"  # the gateway loader reports what is wrong with the file
    if root is None or not isinstance(root.value, dict) or "devices" in root.value \
            or "gateway" in root.value:
        return "gateway"
    broker = root.value.get("broker")
    subscribes = broker is not None and isinstance(broker.value, dict) \
        and "subscribe" in broker.value
    return "consumer" if "database" in root.value or subscribes else "gateway"


def check_file(path: Path, drivers: DriverTable,
               warnings: list[str] | None = None) -> tuple[str, str]:
    """The kind of config and a one-line summary of it; what the operator should still
    fix (a loose password file, a password in clear text) is added to `warnings`.

    Raises:
        ConfigError: listing every problem in the file.
        MissingExtras: naming each optional library the config needs and cannot import.
    """
    found = [] if warnings is None else warnings
    if config_kind(path) == "consumer":
        consumer = load_consumer_config(path)
        found += _check_secrets(consumer.credentials)
        try:
            found += load_database_password(consumer.database_password_file,
                                            str(consumer.path)).warnings
        except CredentialError as exc:
            raise ConfigError(exc.problems) from exc
        require_extras(consumer, drivers)
        return "consumer", f"broker {consumer.endpoints}, subscribe {consumer.subscribe}, " \
                           f"database {consumer.database_label}"
    config = load_gateway_config(path, drivers)
    found += _check_secrets(config.broker.credentials)
    require_extras(config, drivers)
    streams = sum(len(d.streams) for d in config.devices)
    return "gateway", (f"gateway {config.gateway_id}, {len(config.devices)} devices, "
                       f"{streams} streams, broker {config.broker.endpoints}")


def _check_secrets(credentials: BrokerCredentials) -> tuple[str, ...]:
    """The credential files must be readable now (by whoever runs `check`); the warnings."""
    try:
        return load_secrets(credentials).warnings
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


def check_warnings(path: Path, drivers: DriverTable) -> list[str]:
    """What may stop a valid gateway config from working here and now, without making it
    invalid: a device node that is absent (a USB sensor may be plugged in later) and a
    state_dir this user cannot write. Empty for a consumer config."""
    if config_kind(path) == "consumer":
        return []
    config = load_gateway_config(path, drivers)
    lines = [line for device in config.devices for line in _device_warnings(device.id,
                                                                            device.options)]
    problem = _unwritable(config.state_dir)
    if problem is not None:
        lines.append(problem)
    return lines


def _device_warnings(device: str, options: object) -> list[str]:
    """Device nodes and sysfs paths a driver's options name that do not exist now."""
    port, chip = getattr(options, "port", None), getattr(options, "chip", None)
    bus, base = getattr(options, "bus", None), getattr(options, "base_dir", None)
    if isinstance(port, str) and port.startswith("/") and not os.path.exists(port):
        return [f"{device}: port {port} does not exist now (a USB sensor may be plugged in "
                "later; ls /dev/serial/by-id/)"]
    if isinstance(chip, str) and chip.startswith("/") and not os.path.exists(chip):
        return [f"{device}: chip {chip} does not exist now (gpiodetect lists the GPIO chips)"]
    if isinstance(bus, int) and not os.path.exists(f"/dev/i2c-{bus}"):
        return [f"{device}: /dev/i2c-{bus} does not exist now (enable I2C: dtparam=i2c_arm=on "
                "in config.txt, or modprobe i2c-dev; i2cdetect -l lists the buses)"]
    if isinstance(base, str) and not os.path.isdir(base):
        return [f"{device}: {base} does not exist now (enable 1-Wire: dtoverlay=w1-gpio in "
                "config.txt)"]
    if isinstance(base, str):
        return [f"{device}: probe {probe.id} is not under {base} now (ls {base})"
                for probe in getattr(options, "probes", ())
                if not os.path.isdir(os.path.join(base, probe.id))]
    return []


def _unwritable(state_dir: Path) -> str | None:
    """Why this user could not create its store in `state_dir`, or None."""
    who = f"uid {os.geteuid()}"
    service = " (under systemd, StateDirectory= makes it the service user's)" \
        if str(state_dir).startswith("/var/lib/mqtt-gateway") else ""
    if state_dir.is_dir():
        if os.access(state_dir, os.W_OK | os.X_OK):
            return None
        return f"state_dir {state_dir} is not writable by {who}: run as its owner{service}"
    parent = state_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if state_dir.exists():
        return f"state_dir {state_dir} is not a directory"
    if os.access(parent, os.W_OK | os.X_OK):
        return None
    return (f"state_dir {state_dir} does not exist and {who} cannot create it ({parent} is "
            f"not writable){service}")
