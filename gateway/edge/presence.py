"""The gateway's online status on the broker (`{topic_prefix}/_status`, retained).

Published at every connect and whenever a device goes up or down; the MQTT last will
says "offline" (reason "connection lost") should the gateway vanish, and a clean stop
publishes "offline" with its reason before disconnecting. See gateway/core/presence.py.
"""

from __future__ import annotations

import time

from gateway.core.presence import GatewayStatus, status_topic
from gateway.mqtt.link import MqttLink


class Presence:
    """Keeps the retained status of one gateway up to date."""

    def __init__(self, link: MqttLink, gateway: str, prefix: str, epoch: str,
                 devices: list[str], version: str) -> None:
        self.link = link
        self.version = version
        self.topic = status_topic(prefix)
        self.gateway = gateway
        self.epoch = epoch
        self.since = time.time()
        self.devices = dict.fromkeys(devices, "down")
        self.published = 0
        link.set_will(self.topic, self._status("offline", "connection lost").encode())

    def _status(self, state: str, reason: str | None = None) -> GatewayStatus:
        return GatewayStatus(self.gateway, state, self.epoch, self.since, self.version,
                             dict(self.devices), reason)

    def connected(self) -> None:
        """Say "online" (after each CONNACK)."""
        if self.link.publish_retained(self.topic, self._status("online").encode()) is not None:
            self.published += 1

    def device_state(self, device: str, up: bool) -> None:
        """A device went up or down: say so when connected (else at the next connect)."""
        state = "up" if up else "down"
        if self.devices.get(device) == state:
            return
        self.devices[device] = state
        self.connected()

    def devices_changed(self, devices: list[str]) -> None:
        """After a reload: the device map is `devices` (new ones are down until they report)."""
        self.devices = {d: self.devices.get(d, "down") for d in devices}
        self.connected()

    def stopping(self, reason: str) -> None:
        """Say "offline" with `reason` (before a clean disconnect, which skips the will)."""
        self.link.publish_retained(self.topic, self._status("offline", reason).encode())
