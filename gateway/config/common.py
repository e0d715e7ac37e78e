"""Shared pieces of the gateway and consumer configs: files, versions, brokers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config.reader import MapReader, Problem, describe
from gateway.config.yaml_source import load_located, read_source
from gateway.core.errors import MqttGatewayError

CONFIG_VERSION = 1
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class ConfigError(MqttGatewayError):
    """A config file has problems; `problems` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: `mqtt://host:port` or `mqtts://host:port` (TLS)."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress | str:
    """The address in `url`, or a message saying what is wrong with it."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "it is not a valid URL"
    if parts.scheme not in ("mqtt", "mqtts"):
        return "the scheme must be mqtt:// or mqtts://"
    if parts.username or parts.password:
        return "credentials do not belong in the URL"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "it must not have a path, query or fragment"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if port == 0:  # urlsplit accepts it; `port or default` below would turn it into 1883
        return "the port is not a number from 1 to 65535"
    if not parts.hostname or any(ch.isspace() for ch in parts.hostname):
        return "it has no host, or the host contains white space"
    return BrokerAddress(parts.hostname, port or (8883 if parts.scheme == "mqtts" else 1883),
                         parts.scheme == "mqtts")


def read_root(path: Path) -> tuple[MapReader | None, list[Problem]]:
    """Read a config file into a top-level `MapReader`, checking `version:`."""
    problems: list[Problem] = []
    name = str(path)
    try:
        text = read_source(path)
    except FileNotFoundError:
        return None, [Problem(name, None, "", "a readable config file", "no such file")]
    except UnicodeDecodeError as exc:
        return None, [Problem(name, None, "", "UTF-8 text", f"undecodable bytes ({exc.reason})")]
    except OSError as exc:
        return None, [Problem(name, None, "", "a readable config file", exc.strerror or str(exc))]
    try:
        root, errors = load_located(text)
    except RecursionError:
        return None, [Problem(name, None, "", "valid YAML", "values nested too deeply to read")]
    for error in errors:
        problems.append(Problem(name, error.line, error.path, "valid YAML", error.message,
                                error.hint))
    if root is None:
        if not errors:
            problems.append(Problem(name, None, "", "a mapping with 'version: 1'", "an empty file"))
        return None, problems
    if not isinstance(root.value, dict):
        problems.append(Problem(name, root.line, "", "a mapping at the top level",
                                describe(root.value)))
        return None, problems
    reader = MapReader(root, "", name, problems)
    version = reader.integer("version", required=True)
    if version is not None and version != CONFIG_VERSION:
        reader.problem("version", f"{CONFIG_VERSION} (the config format this release reads)",
                       describe(version))
    return reader, problems


PROTOCOLS = ("auto", "5", "3.1.1")
MAX_BROKER_URLS = 16
_URL_EXPECTED = "a URL such as mqtt://host:1883 or mqtts://host:8883"


@dataclass(frozen=True)
class BrokerEndpoints:
    """The `broker` keys shared by the gateway and the consumer: the broker's URLs (tried in
    turn after a connection loss), the MQTT version (`auto`: 5, else 3.1.1 when the broker
    does not speak 5) and the highest QoS the broker takes (None: learnt from it)."""

    addresses: tuple[BrokerAddress, ...]
    protocol: str = "auto"
    max_qos: int | None = None

    def __str__(self) -> str:
        return ", ".join(str(a) for a in self.addresses)


def _one_url(reader: MapReader, path: str, url: object) -> BrokerAddress | None:
    if not isinstance(url, str):
        reader.problem(path, _URL_EXPECTED, describe(url))
        return None
    parsed = parse_broker_url(url)
    if isinstance(parsed, str):
        reader.problem(path, _URL_EXPECTED, describe(url), parsed)
        return None
    return parsed


def read_broker_endpoints(reader: MapReader) -> BrokerEndpoints | None:
    """The `url` (one URL or a list), `protocol` and `max_qos` keys of a broker section."""
    raw = reader.raw("url")
    addresses: list[BrokerAddress | None] = []
    if raw is None or raw.value is None:
        addresses.append(parse_broker_url("mqtt://127.0.0.1:1883"))  # type: ignore[arg-type]
    elif isinstance(raw.value, list):
        if not raw.value or len(raw.value) > MAX_BROKER_URLS:
            reader.problem("url", f"a list of 1 to {MAX_BROKER_URLS} broker URLs",
                           f"a list of {len(raw.value)}")
            return None
        addresses.extend(_one_url(reader, f"url[{i}]", item.value)
                         for i, item in enumerate(raw.value))
    else:
        addresses.append(_one_url(reader, "url", raw.value))
    protocol_raw = reader.raw("protocol")
    protocol: str | None = "auto"
    if protocol_raw is not None and protocol_raw.value is not None:
        value = protocol_raw.value
        protocol = str(value) if isinstance(value, int | str) and not isinstance(value, bool) \
            else None
        if protocol not in PROTOCOLS:
            reader.problem("protocol", "one of auto, 5, 3.1.1 (a string: '3.1.1')",
                           describe(value))
            protocol = None
    qos_raw = reader.raw("max_qos")
    max_qos = reader.integer("max_qos", minimum=0, maximum=2)
    bad_qos = qos_raw is not None and qos_raw.value is not None and max_qos is None
    found = [a for a in addresses if a is not None]
    if len(found) != len(addresses) or protocol is None or bad_qos:
        return None
    return BrokerEndpoints(tuple(found), protocol, max_qos)


@dataclass(frozen=True)
class ListenAddress:
    """Where an HTTP endpoint listens (the metrics endpoint)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


LISTEN_EXPECTED = "a port such as 9108 (on 127.0.0.1) or host:port such as 127.0.0.1:9108"


def parse_listen(value: object) -> ListenAddress | None:
    """`9108` or `"9108"` (localhost) or `"host:port"`; None when it is neither."""
    if isinstance(value, bool):
        return None
    text = str(value).strip() if isinstance(value, int | str) else ""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]")
    if not port_text.isdigit() or not host or any(ch.isspace() for ch in host):
        return None
    port = int(port_text)
    return ListenAddress(host, port) if 0 < port < 65536 else None


def read_metrics(root: MapReader) -> ListenAddress | None:
    """The optional top-level `metrics: {listen: ...}` section (off when absent)."""
    section = root.mapping("metrics")
    if section is None:
        return None
    raw = section.raw("listen")
    section.finish()
    if raw is None or raw.value is None:
        section.problem("listen", LISTEN_EXPECTED, "nothing (the key is missing)")
        return None
    address = parse_listen(raw.value)
    if address is None:
        section.problem("listen", LISTEN_EXPECTED, describe(raw.value))
    return address
