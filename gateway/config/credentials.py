"""Broker credentials and TLS files: where they are named, found and read.

The broker section of both configs may name `username`, `password_file`,
`ca_file`, `cert_file` and `key_file`. A relative file name is looked up in
$CREDENTIALS_DIRECTORY when that is set (systemd's `LoadCredential=`), else
beside the config file. The files are read once at start. Secrets never
leave this module except to paho (and, for the consumer's
`database_password_file`, to psycopg): `BrokerSecrets` has no readable repr
and errors name the file, never its content. Reading them also gives
warnings: a password file readable by its group or others, and a password
sent in clear text (mqtt://, not mqtts://) to a broker on another host.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.reader import MapReader, Problem
from gateway.core.errors import MqttGatewayError

FILE_KEYS = ("password_file", "ca_file", "cert_file", "key_file")
USERNAME = "1-256 characters of a user name (no NUL)"
FILE_EXPECTED = "a file path (relative: in $CREDENTIALS_DIRECTORY, else beside the config)"


@dataclass(frozen=True)
class NamedFile:
    """A file named by a key of the broker section, with where it was named."""

    key: str
    name: str
    line: int


@dataclass(frozen=True)
class BrokerCredentials:
    """What the broker section says about authentication and TLS (no secrets yet)."""

    username: str | None = None
    files: tuple[NamedFile, ...] = ()
    config_file: str = ""
    section: str = "broker"
    cleartext: bool = False  # mqtt:// (not mqtts://) to a host other than this one

    def named(self, key: str) -> NamedFile | None:
        """The file given under `key`, if any."""
        return next((f for f in self.files if f.key == key), None)


@dataclass(frozen=True)
class BrokerSecrets:
    """The secrets read from the files: a password and a TLS context, never printed."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()  # for the operator: loose file modes, clear text


@dataclass(frozen=True)
class DatabaseSecret:
    """The consumer's PostgreSQL password, read from `database_password_file`."""

    password: str | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()


class CredentialError(MqttGatewayError):
    """A credential file is missing, unreadable or invalid; `problems` says which."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (clear text there stays on this host)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_named_file(reader: MapReader, key: str) -> NamedFile | None:
    """A file named under `key` of `reader`'s section (a problem when it is empty)."""
    name = reader.string(key, expected=FILE_EXPECTED)
    if name is None:
        return None
    located = reader.raw(key)
    if not name.strip() or "\x00" in name:
        reader.problem(key, FILE_EXPECTED, repr(name), "it is empty")
        return None
    return NamedFile(key, name, located.line if located is not None else reader.node.line)


def read_credentials(reader: MapReader, tls: bool, host: str | None = None) -> BrokerCredentials:
    """The credential keys of a broker section (`tls`: the URL is mqtts://; `host`: the
    broker's, to tell a password sent in clear text over the network)."""
    username = reader.string("username", expected=USERNAME)
    if username is not None and (not username or "\x00" in username or len(username) > 256):
        reader.problem("username", USERNAME, repr(username))
        username = None
    files: list[NamedFile] = []
    for key in FILE_KEYS:
        name = reader.string(key, expected=FILE_EXPECTED)
        if name is None:
            continue
        located = reader.raw(key)
        line = located.line if located is not None else reader.node.line
        if not name.strip() or "\x00" in name:
            reader.problem(key, FILE_EXPECTED, repr(name), "it is empty")
            continue
        if key != "password_file" and not tls:
            reader.problem(key, "TLS files only with an mqtts:// url", repr(name),
                           "use mqtts://host:8883 for TLS")
            continue
        files.append(NamedFile(key, name, line))
    keys = {f.key for f in files}
    if "password_file" in keys and username is None and not reader.has("username"):
        reader.problem("password_file", "a password_file together with a username",
                       "no username", "add broker.username")
    if ("cert_file" in keys) != ("key_file" in keys):
        given, missing = (("cert_file", "key_file") if "cert_file" in keys
                          else ("key_file", "cert_file"))
        reader.problem(given, "cert_file and key_file together (client certificate)",
                       f"no {missing}")
    cleartext = not tls and host is not None and not is_loopback(host)
    return BrokerCredentials(username, tuple(files), reader.file, reader.path, cleartext)


def resolve(name: str, config_file: str, env: Mapping[str, str] | None = None) -> Path:
    """Where a named file is: absolute as given, else in $CREDENTIALS_DIRECTORY or beside
    the config file."""
    env = os.environ if env is None else env
    path = Path(name)
    if path.is_absolute():
        return path
    creds = env.get("CREDENTIALS_DIRECTORY")
    base = Path(creds) if creds else Path(config_file).resolve().parent
    return base / path


def load_secrets(creds: BrokerCredentials, env: Mapping[str, str] | None = None) -> BrokerSecrets:
    """Read the password and build the TLS context from the named files.

    Raises:
        CredentialError: naming each file that cannot be used (never its content).
    """
    problems: list[Problem] = []
    paths: dict[str, Path] = {}

    def problem(f: NamedFile, found: str, expected: str = "a readable file") -> None:
        problems.append(Problem(creds.config_file, f.line, f"{creds.section}.{f.key}", expected,
                                found))

    for f in creds.files:
        path = resolve(f.name, creds.config_file, env)
        try:
            with path.open("rb"):
                pass
        except FileNotFoundError:
            problem(f, f"no such file: {path}")
            continue
        except OSError as exc:
            problem(f, f"{path}: {exc.strerror or exc}")
            continue
        paths[f.key] = path
    if problems:
        raise CredentialError(problems)
    password = None
    warnings: list[str] = []
    if "password_file" in paths:
        named = _named(creds, "password_file")
        password = _read_password(paths["password_file"], lambda found: problem(
            named, found, "a UTF-8 password file"))
        warnings += _mode_warning(paths["password_file"], creds.config_file, named,
                                  creds.section)
        if creds.cleartext:
            warnings.append(f"{creds.config_file}:{named.line}: {creds.section}.password_file: "
                            "the password goes to the broker in clear text over mqtt://; use "
                            "mqtts:// (TLS) for a broker on another host")
    tls = None
    if any(k in paths for k in ("ca_file", "cert_file", "key_file")):
        tls = _tls_context(creds, paths, problem)
    if problems:
        raise CredentialError(problems)
    return BrokerSecrets(creds.username, password, tls, tuple(warnings))


def load_database_password(named: NamedFile | None, config_file: str,
                           env: Mapping[str, str] | None = None) -> DatabaseSecret:
    """The consumer's `database_password_file`, resolved as the broker's password_file.

    Raises:
        CredentialError: the file cannot be read or is not UTF-8 (never its content).
    """
    if named is None:
        return DatabaseSecret()
    path = resolve(named.name, config_file, env)
    problems: list[Problem] = []
    password = None

    def problem(found: str) -> None:
        problems.append(Problem(config_file, named.line, named.key, "a readable UTF-8 password "
                                "file", found))

    try:
        password = _read_password(path, problem)
    except FileNotFoundError:
        problem(f"no such file: {path}")
    except OSError as exc:
        problem(f"{path}: {exc.strerror or exc}")
    if problems:
        raise CredentialError(problems)
    return DatabaseSecret(password, tuple(_mode_warning(path, config_file, named, "")))


def _read_password(path: Path, problem: Callable[[str], None]) -> str | None:
    """A password file's text; one trailing newline is how editors and `echo` end a file,
    not part of the password."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        problem(f"{path}: not UTF-8 text")
        return None


def _mode_warning(path: Path, config_file: str, named: NamedFile, section: str) -> list[str]:
    """A warning when a password file can be read by its group or by others."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if not mode & 0o044:
        return []
    who = " and ".join(w for bit, w in ((0o040, "its group"), (0o004, "others")) if mode & bit)
    key = f"{section}.{named.key}" if section else named.key
    return [f"{config_file}:{named.line}: {key}: {path} is readable by {who} (mode "
            f"{mode:04o}): chmod 600 {path}, or hand it over with systemd's LoadCredential="]


def _named(creds: BrokerCredentials, key: str) -> NamedFile:
    found = creds.named(key)
    assert found is not None
    return found


def _tls_context(creds: BrokerCredentials, paths: dict[str, Path],
                 report: Callable[[NamedFile, str, str], None]) -> ssl.SSLContext | None:
    context = ssl.create_default_context()
    if "ca_file" in paths:
        try:
            context = ssl.create_default_context(cafile=str(paths["ca_file"]))
        except (ssl.SSLError, OSError, ValueError) as exc:
            report(_named(creds, "ca_file"), f"{paths['ca_file']}: {_ssl_reason(exc)}",
                   "PEM CA certificates")
            return None
    if "cert_file" in paths and "key_file" in paths:
        try:
            context.load_cert_chain(str(paths["cert_file"]), str(paths["key_file"]))
        except (ssl.SSLError, OSError, ValueError) as exc:
            report(_named(creds, "cert_file"),
                   f"{paths['cert_file']} with {paths['key_file']}: {_ssl_reason(exc)}",
                   "a PEM certificate and its private key")
            return None
    return context


def _ssl_reason(exc: BaseException) -> str:
    """A short reason without any file content."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
