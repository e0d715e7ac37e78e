"""The gateway's durable SQLite outbox: readings kept until acknowledged, with their
sequences and drop counters; opened, recovered or salvaged when damaged, and held within
its size on a full disk."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.store.confirmations import Confirmations
    from gateway.store.outbox import NewReading, Outbox, OutboxRow
    from gateway.store.schema import DropKey
    from gateway.store.space import DiskFullError
    from gateway.store.sql import StoreError

__all__ = [
    "Confirmations",
    "DiskFullError",
    "DropKey",
    "NewReading",
    "Outbox",
    "OutboxRow",
    "StoreError",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.store.confirmations": ("Confirmations",),
        "gateway.store.outbox": ("NewReading", "Outbox", "OutboxRow"),
        "gateway.store.schema": ("DropKey",),
        "gateway.store.space": ("DiskFullError",),
        "gateway.store.sql": ("StoreError",),
    })
