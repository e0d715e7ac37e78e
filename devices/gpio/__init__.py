"""The GPIO driver: one input line of the kernel's GPIO character device, through gpiod
(loaded only when a line is requested), as debounced edges, a polled level or a pulse
counter; debouncing and counting are the pure `logic`."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from devices.gpio.driver import GpioOptions

__all__ = [
    "GpioOptions",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "devices.gpio.driver": ("GpioOptions",),
    })
