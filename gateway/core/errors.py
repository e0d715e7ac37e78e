"""The project's own exceptions: one root, and the whole tree drawn here.

Two families, as in h11. Misuse by the caller (a value type built with bad
arguments, a row moved along a transition the life-cycle does not allow) is
a `ValueError` or `TypeError` raised where it happens: a bug, never an
operator's problem. Everything an operator can cause or fix (a bad config
file, a store that cannot be opened, a full disk, a failed install) derives
from `MqttGatewayError`, carries a message that names the file, key or path
it is about, and is caught by the command line, which prints that message
without a traceback. Garbage from the other side (a device's bad line, a
payload that does not decode) is not an exception at all: it is a value
(`devices.base.Rejected`, `gateway.core.envelope.Undecodable`) that is
counted by reason.

    MqttGatewayError                    gateway.core.errors
    ├── ConfigError                     gateway.config.common: every Problem in a config file
    ├── CredentialError                 gateway.config.credentials: a credential file is unusable
    ├── StoreError                      gateway.store.sql: the store file cannot be used
    ├── DiskFullError                   gateway.store.space: no room for a commit (also a
    │                                   sqlite3.OperationalError, as SQLite's own disk-full is)
    ├── StatusError                     gateway.edge.status: `status` cannot read the store
    ├── ConsumerStatusError             gateway.cloud.status: `status` cannot read the
    │                                   consumer's database
    └── InstallError                    gateway.ops.install: install-service cannot go on
"""

from __future__ import annotations

__all__ = ["MqttGatewayError"]


class MqttGatewayError(Exception):
    """The root of every error this project raises for an operator to read."""
