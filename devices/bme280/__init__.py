"""The BME280 driver: a Bosch temperature, pressure and humidity sensor on I2C, through
smbus2 (loaded only when the bus is opened); the datasheet's compensation formulas are
the pure `compensation`."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from devices.bme280.driver import Bme280Options

__all__ = [
    "Bme280Options",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "devices.bme280.driver": ("Bme280Options",),
    })
