"""Delivery classes and what each one means for QoS and storage."""

from __future__ import annotations

from enum import Enum


class DeliveryClass(Enum):
    """How hard the gateway tries to get a stream's readings upstream."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"

    @property
    def qos(self) -> int:
        """The MQTT QoS used on the gateway -> broker leg."""
        return _QOS[self]

    @classmethod
    def from_qos(cls, qos: int) -> DeliveryClass:
        """The class whose QoS is `qos`."""
        for delivery, value in _QOS.items():
            if value == qos:
                return delivery
        raise ValueError(f"no delivery class for QoS {qos}")


_QOS = {
    DeliveryClass.AT_MOST_ONCE: 0,
    DeliveryClass.AT_LEAST_ONCE: 1,
    DeliveryClass.EXACTLY_ONCE: 2,
}

DELIVERY_NAMES = tuple(d.value for d in DeliveryClass)
