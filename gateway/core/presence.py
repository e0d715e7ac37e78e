"""The gateway's online status: a retained message on `{topic_prefix}/_status`.

Pure. At every connect the gateway publishes `"state": "online"` (retained), again when
a device goes up or down, and `"state": "offline"` with a `reason` on a clean stop; the
same offline message, with reason "connection lost", is its MQTT last will, published
by the broker when the gateway vanishes. The consumer keeps the latest per gateway.
A status is bounded in size and shape before it is trusted (`decode_status`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

STATUS_LEVEL = "_status"
STATUS_VERSION = 1
MAX_STATUS_BYTES = 64 * 1024  # checked before parsing
MAX_STATUS_DEVICES = 1000
MAX_TEXT = 200  # gateway, epoch, version, reason, device ids
STATES = ("online", "offline")
DEVICE_STATES = ("up", "down")

_SUFFIX = "/" + STATUS_LEVEL


def status_topic(prefix: str) -> str:
    """Where the gateway publishing under `prefix` says whether it is online."""
    return f"{prefix}/{STATUS_LEVEL}"


def is_status_topic(topic: str) -> bool:
    """True for a status topic (which a consumer subscribed to `gw/#` also sees)."""
    return topic.endswith(_SUFFIX)


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """One status message."""

    gateway: str
    state: str  # online | offline
    epoch: str
    since: float  # when the gateway process started (Unix time)
    version: str
    devices: dict[str, str]  # device id -> up | down
    reason: str | None = None  # why it is offline

    def encode(self) -> bytes:
        """The payload."""
        body: dict[str, object] = {
            "v": STATUS_VERSION, "gateway": self.gateway, "state": self.state,
            "epoch": self.epoch, "since": round(self.since, 3), "version": self.version,
            "devices": dict(sorted(self.devices.items())),
        }
        if self.reason is not None:
            body["reason"] = self.reason
        return json.dumps(body, separators=(",", ":")).encode()


def _text(value: object, *, empty: bool = False) -> bool:
    """A short string a database can store (no NUL, no lone surrogate)."""
    if not isinstance(value, str) or not (empty or value) or len(value) > MAX_TEXT \
            or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _devices(raw: object) -> dict[str, str] | None:
    if not isinstance(raw, dict) or len(raw) > MAX_STATUS_DEVICES:
        return None
    if not all(_text(k) and v in DEVICE_STATES for k, v in raw.items()):
        return None
    return dict(raw)


def decode_status(payload: bytes) -> GatewayStatus | str:
    """The status in `payload`, or why it is not one."""
    if len(payload) > MAX_STATUS_BYTES:
        return f"{len(payload)} bytes, more than {MAX_STATUS_BYTES}"
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(body, dict) or body.get("v") != STATUS_VERSION:
        return "not a version 1 status"
    gateway, state, epoch = body.get("gateway"), body.get("state"), body.get("epoch")
    since, version, reason = body.get("since"), body.get("version"), body.get("reason")
    if not _text(gateway) or state not in STATES or not _text(epoch, empty=True) \
            or not _text(version, empty=True):
        return "gateway, state, epoch or version missing or malformed"
    if isinstance(since, bool) or not isinstance(since, int | float) or not 0 <= since < 1e11:
        return "since is not a Unix time"
    if reason is not None and not _text(reason, empty=True):
        return "reason is not a short string"
    devices = _devices(body.get("devices", {}))
    if devices is None:
        return f"devices is not a map of at most {MAX_STATUS_DEVICES} ids to up/down"
    assert isinstance(gateway, str) and isinstance(state, str)
    assert isinstance(epoch, str) and isinstance(version, str)
    return GatewayStatus(gateway, state, epoch, float(since), version, devices, reason)
