"""The MQTT connection (MQTT 5, or 3.1.1 for a broker that speaks only that): `MqttLink`,
one paho client driven by the asyncio event loop,
reconnecting with backoff, and the `Session` the broker granted in CONNACK. What it needs
of paho's internals is private to this package (`_paho`)."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.mqtt.link import MqttLink, Session

__all__ = [
    "MqttLink",
    "Session",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.mqtt.link": ("MqttLink", "Session"),
    })
