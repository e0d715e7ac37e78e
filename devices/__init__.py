"""Device drivers: each reads one kind of device and hands `Record`s and rejects to the
pipeline's `RecordSink` (`devices.base`, shared by all). `DRIVERS` (`devices.registry`) is
the table of drivers the config can name; a hardware library loads only when its driver runs."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from devices.base import DeviceState, DriverRun, Record, RecordSink, Rejected, excerpt
    from devices.registry import DRIVERS

__all__ = [
    "DRIVERS",
    "DeviceState",
    "DriverRun",
    "Record",
    "RecordSink",
    "Rejected",
    "excerpt",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "devices.base": ("DeviceState", "DriverRun", "Record", "RecordSink", "Rejected", "excerpt"),
        "devices.registry": ("DRIVERS",),
    })
