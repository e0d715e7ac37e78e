"""The Modbus RTU driver: registers and coils of slaves on one serial bus, polled through
pymodbus (loaded only when the driver runs), decoded by `decoding`, each at its own interval
by `schedule`."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from devices.modbus.driver import ModbusOptions, Register

__all__ = [
    "ModbusOptions",
    "Register",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "devices.modbus.driver": ("ModbusOptions", "Register"),
    })
