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


def read_broker_address(reader: MapReader) -> BrokerAddress | None:
    """The `url` key of a broker section."""
    url = reader.string("url", default="mqtt://127.0.0.1:1883",
                        expected="a URL such as mqtt://127.0.0.1:1883")
    if url is None:
        return None
    parsed = parse_broker_url(url)
    if isinstance(parsed, str):
        reader.problem("url", "a URL such as mqtt://host:1883 or mqtts://host:8883",
                       describe(url), parsed)
        return None
    return parsed


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
