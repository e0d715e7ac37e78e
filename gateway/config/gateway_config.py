"""The gateway's YAML device map, parsed once into typed objects.

`load_gateway_config(path, drivers)` returns a `GatewayConfig` or raises
`ConfigError` listing every problem found (file, line, key path, expected,
found). Keys are the contract of docs/contracts.md ("Gateway config");
driver-specific keys are read by the driver's own entry in the driver table
the caller passes (the edge passes `devices.registry.drivers`), so config
knows no driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field  # `field` is also a StreamConfig key
from pathlib import Path
from typing import Any, Literal, Protocol

from gateway.config.batching import read_batching
from gateway.config.common import (
    CLIENT_ID,
    BrokerAddress,
    BrokerEndpoints,
    ConfigError,
    ListenAddress,
    read_broker_endpoints,
    read_metrics,
    read_root,
)
from gateway.config.credentials import BrokerCredentials, read_credentials
from gateway.config.reader import MapReader, describe, did_you_mean
from gateway.config.yaml_source import Located
from gateway.core.batch import BatchPolicy
from gateway.core.batch_wire import BATCH_LEVEL
from gateway.core.confirmation import CONFIRM_LEVEL
from gateway.core.delivery import DELIVERY_NAMES, DeliveryClass
from gateway.core.extras import Extra
from gateway.core.presence import STATUS_LEVEL
from gateway.core.report_by_exception import ReportPolicy, parse_deadband
from gateway.core.topics import GATEWAY_ID, SEGMENT_EXPECTED, TopicTemplate, segment_problem

Durability = Literal["normal", "full"]
ON_FULL = ("refuse-new", "drop-oldest")
MAX_AGE_LIMIT = 365 * 86400.0  # a stream's max_age: at most a year (MQTT's expiry is 32-bit)


@dataclass(frozen=True)
class StreamConfig:
    """One named stream of readings taken from one field of a device's records."""

    name: str
    field: str
    delivery: DeliveryClass
    unit: str | None
    report: ReportPolicy = dataclass_field(default_factory=ReportPolicy)
    max_age: float | None = None  # seconds; older readings are dropped (`expired`), not sent


@dataclass(frozen=True)
class DeviceConfig:
    """One device: its driver, the driver's own options, and its streams."""

    id: str
    driver: str
    options: Any
    streams: tuple[StreamConfig, ...]


@dataclass(frozen=True)
class BrokerConfig:
    """The upstream broker and how the gateway talks to it."""

    endpoints: BrokerEndpoints
    topics: TopicTemplate
    client_id: str
    keepalive: int
    session_expiry: int
    max_inflight: int
    max_payload_bytes: int
    credentials: BrokerCredentials = dataclass_field(default_factory=BrokerCredentials)

    @property
    def address(self) -> BrokerAddress:
        """The first broker URL."""
        return self.endpoints.addresses[0]


@dataclass(frozen=True)
class StoreConfig:
    """The SQLite outbox: durability, size cap and group-commit window."""

    durability: Durability
    max_bytes: int
    commit_interval: float
    commit_batch: int
    at_most_once_buffer: int
    on_full: str = "refuse-new"  # or "drop-oldest": stored readings make room (`evicted`)


@dataclass(frozen=True)
class GatewayConfig:
    """A whole, validated gateway config."""

    path: Path
    gateway_id: str
    state_dir: Path
    broker: BrokerConfig
    store: StoreConfig
    devices: tuple[DeviceConfig, ...]
    summary_interval: float
    confirmation: str = "end-to-end"  # durable rows wait for the consumer; or "broker"
    confirmation_timeout: float = 30.0
    metrics: ListenAddress | None = None  # the Prometheus endpoint; off when None
    batching: BatchPolicy | None = None  # v2 batches of stored readings; off when None

    @property
    def store_path(self) -> Path:
        """The SQLite file of the outbox."""
        return self.state_dir / "outbox.sqlite"


class DriverEntry(Protocol):
    """What config needs of one driver: how to read its keys and which fields it offers."""

    @property
    def name(self) -> str:
        """The `driver:` value that selects it."""

    @property
    def read_options(self) -> Callable[[MapReader], Any]:
        """Reads the driver's own keys of a device entry."""

    @property
    def offered_fields(self) -> Callable[[Any], frozenset[str] | None]:
        """The record fields the driver can produce with these options (None: any)."""

    @property
    def extra(self) -> Extra | None:
        """The extra of the distribution that brings the driver's library (None: no library)."""


DriverTable = Mapping[str, DriverEntry]


def load_gateway_config(path: Path, drivers: DriverTable) -> GatewayConfig:
    """Read and validate a gateway config file against a driver table.

    Raises:
        ConfigError: listing every problem in the file.
    """
    root, problems = read_root(path)
    if root is None:
        raise ConfigError(problems)
    config = _read_gateway(root, path, drivers)
    root.finish()
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _read_gateway(root: MapReader, path: Path, drivers: DriverTable) -> GatewayConfig | None:
    section = root.mapping("gateway", required=True)
    gateway_id, state_dir, summary = None, None, 10.0
    if section is not None:
        gateway_id = section.string("id", required=True, pattern=GATEWAY_ID,
                                    expected="1-64 letters, digits, '-' or '_'")
        state_dir = section.string("state_dir", default="./state",
                                   expected="a directory path")
        summary = section.duration("summary_interval", default=10.0, minimum=1.0)
        section.finish()
    broker = _read_broker(root.mapping("broker"), gateway_id or "gateway", root)
    store = _read_store(root.mapping("store"))
    devices = _read_devices(root, drivers)
    confirmation = root.choice("confirmation", ("broker", "end-to-end"), default="end-to-end")
    timeout = root.duration("confirmation_timeout", default=30.0, minimum=1.0, maximum=86400.0)
    metrics = read_metrics(root)
    batching = read_batching(root)
    if gateway_id is None or state_dir is None or broker is None or store is None \
            or confirmation is None:
        return None
    return GatewayConfig(path, gateway_id, Path(state_dir), broker, store, devices, summary,
                         confirmation, timeout, metrics, batching)


def _read_broker(section: MapReader | None, gateway_id: str, root: MapReader) -> BrokerConfig | None:
    if section is None:
        # Every key of the section has a default: an absent section means a local broker.
        section = MapReader(Located({}, root.node.line), "broker", root.file, root.problems)
    endpoints = read_broker_endpoints(section)
    template = section.string("topic_prefix", default="gw/{gateway}",
                              expected="a topic prefix such as gw/{gateway}")
    topics = None
    if template is not None:
        try:
            topics = TopicTemplate.compile(template, gateway_id)
        except ValueError as exc:
            section.problem("topic_prefix", "a topic prefix such as gw/{gateway} "
                            "(levels without '+', '#', NUL or spaces)", describe(template),
                            str(exc))
    client_id = section.string("client_id", default=f"mqtt-gateway-{gateway_id}",
                               pattern=CLIENT_ID,
                               expected="1-128 letters, digits or '_.:-'")
    keepalive = section.duration("keepalive", default=30.0, minimum=5.0, maximum=3600.0)
    expiry = section.duration("session_expiry", default=3600.0, minimum=0.0,
                              maximum=4294967295.0)
    inflight = section.integer("max_inflight", default=100, minimum=1, maximum=65535)
    payload = section.size("max_payload_bytes", default=256 * 1024, minimum=256,
                           maximum=256 * 1024 * 1024)
    credentials = read_credentials(
        section, endpoints is not None and any(a.tls for a in endpoints.addresses),
        next((a.host for a in endpoints.addresses if not a.tls), None)
        if endpoints is not None else None)
    section.finish()
    if endpoints is None or topics is None or client_id is None or inflight is None:
        return None
    return BrokerConfig(endpoints, topics, client_id, int(keepalive), int(expiry), inflight,
                        payload, credentials)


def _read_store(section: MapReader | None) -> StoreConfig | None:
    if section is None:
        return StoreConfig("normal", 256 * 1024**2, 0.2, 500, 1000)
    durability = section.choice("durability", ("normal", "full"), default="normal")
    max_bytes = section.size("max_bytes", default=256 * 1024**2, minimum=1024 * 1024)
    interval = section.duration("commit_interval", default=0.2, minimum=0.001, maximum=60.0)
    batch = section.integer("commit_batch", default=500, minimum=1, maximum=100_000)
    buffer = section.integer("at_most_once_buffer", default=1000, minimum=1, maximum=1_000_000)
    on_full = section.choice("on_full", ON_FULL, default="refuse-new")
    section.finish()
    if durability not in ("normal", "full") or batch is None or buffer is None or on_full is None:
        return None
    return StoreConfig("full" if durability == "full" else "normal", max_bytes, interval, batch,
                       buffer, on_full)


def _read_devices(root: MapReader, drivers: DriverTable) -> tuple[DeviceConfig, ...]:
    devices: list[DeviceConfig] = []
    seen: dict[str, int] = {}
    entries = list(root.items("devices", required=True))
    raw = root.raw("devices")
    if raw is not None and isinstance(raw.value, list) and not raw.value:
        root.problem("devices", "at least one device", "an empty list")
    for path, located in entries:
        reader = root.child(path, located)
        if reader is None:
            continue
        device = _read_device(reader, seen, drivers)
        reader.finish()
        if device is not None:
            devices.append(device)
    return tuple(devices)


def _unique_segment(reader: MapReader, key: str, seen: dict[str, int], once: str) -> str | None:
    """A topic segment under `key` not used before in `seen` (name -> line)."""
    value = reader.string(key, required=True, expected=SEGMENT_EXPECTED)
    located = reader.raw(key)
    if value is None or located is None:
        return None
    problem = segment_problem(value)
    if value == CONFIRM_LEVEL:
        problem = "it is reserved for end-to-end confirmations"
    elif value == STATUS_LEVEL:
        problem = "it is reserved for the gateway's online status"
    elif value == BATCH_LEVEL:
        problem = "it is reserved for batches (wire format v2)"
    if problem is not None:
        reader.problem(key, SEGMENT_EXPECTED, describe(value), problem)
        return None
    if value in seen:
        reader.problem(key, once, describe(value), f"already used at line {seen[value]}")
        return None
    seen[value] = located.line
    return value


def _read_device(reader: MapReader, seen: dict[str, int], drivers: DriverTable
                 ) -> DeviceConfig | None:
    device_id = _unique_segment(reader, "id", seen, "a device id used once")
    driver_name = reader.string("driver", required=True, expected="a driver name")
    spec = None
    if driver_name is not None:
        spec = drivers.get(driver_name)
        if spec is None:
            reader.problem("driver", "one of " + ", ".join(sorted(drivers)),
                           describe(driver_name), did_you_mean(driver_name, sorted(drivers)))
    if spec is None:
        # Without a driver nobody knows its keys: calling `port` unknown would only mislead.
        for key in reader.node.value:
            reader.has(key)
    options = spec.read_options(reader) if spec is not None else None
    offered = spec.offered_fields(options) if spec is not None and options is not None else None
    streams = _read_streams(reader, offered)
    if device_id is None or spec is None or options is None or streams is None:
        return None
    return DeviceConfig(device_id, spec.name, options, streams)


def _read_streams(
    reader: MapReader, offered: frozenset[str] | None
) -> tuple[StreamConfig, ...] | None:
    streams: list[StreamConfig] = []
    seen: dict[str, int] = {}
    ok = True
    entries = list(reader.items("streams", required=True))
    raw = reader.raw("streams")
    if raw is not None and isinstance(raw.value, list) and not entries:
        reader.problem("streams", "at least one stream", "an empty list")
        return None
    for path, located in entries:
        child = reader.child(path, located)
        if child is None:
            ok = False
            continue
        stream = _read_stream(child, seen, offered)
        child.finish()
        if stream is None:
            ok = False
        else:
            streams.append(stream)
    return tuple(streams) if ok and streams else None


def _read_stream(
    reader: MapReader, seen: dict[str, int], offered: frozenset[str] | None
) -> StreamConfig | None:
    name = _unique_segment(reader, "name", seen, "a stream name used once per device")
    field = reader.string("field", default=name, expected="the name of a field in the record")
    if field is not None and offered is not None and field not in offered:
        reader.problem("field", "one of the fields the driver offers: " + ", ".join(sorted(offered)),
                       describe(field), did_you_mean(field, sorted(offered)))
        field = None
    unit = reader.string("unit", expected="a unit such as °C")
    delivery = reader.choice("delivery", DELIVERY_NAMES, required=True)
    report = _read_report_policy(reader)
    max_age = (reader.duration("max_age", default=0.0, minimum=1.0, maximum=MAX_AGE_LIMIT)
               if reader.has("max_age") else 0.0)
    if max_age and delivery == DeliveryClass.AT_MOST_ONCE.value:
        reader.problem("max_age", "max_age only on a durable stream (at-least-once, exactly-once)",
                       "an at-most-once stream, whose readings are never stored")
        return None
    if name is None or field is None or delivery is None or report is None:
        return None
    return StreamConfig(name, field, DeliveryClass(delivery), unit, report, max_age or None)


def _read_report_policy(reader: MapReader) -> ReportPolicy | None:
    """The stream's report-by-exception keys: deadband, min_interval, max_interval."""
    problems = len(reader.problems)
    deadband = None
    raw = reader.raw("deadband")
    if raw is not None and raw.value is not None:
        deadband = parse_deadband(raw.value)
        if deadband is None:
            reader.problem("deadband", "a number >= 0 or a percentage such as '2%'",
                           describe(raw.value))
    min_interval = reader.duration("min_interval", default=0.0, maximum=86400.0 * 365)
    max_interval = reader.duration("max_interval", default=0.0, minimum=0.001,
                                   maximum=86400.0 * 365) or None
    found = reader.raw("max_interval")
    if max_interval is not None and found is not None and max_interval < min_interval:
        reader.problem("max_interval", f"a duration of at least min_interval ({min_interval:g}s)",
                       describe(found.value))
    if len(reader.problems) > problems:
        return None
    return ReportPolicy(deadband, min_interval, max_interval)

