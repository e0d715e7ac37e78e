"""The cloud side: the consumer (`Consumer`, `consume`) that stores each reading once,
whatever the broker redelivers, and acknowledges it only then; and its database on SQLite
or PostgreSQL (`open_readings_db`), whose gaps the metrics endpoint reads (`read_gaps`)."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.cloud.consumer import Consumer, consume
    from gateway.cloud.database import ReadingsDB, open_readings_db, read_gaps

__all__ = [
    "Consumer",
    "ReadingsDB",
    "consume",
    "open_readings_db",
    "read_gaps",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.cloud.consumer": ("Consumer", "consume"),
        "gateway.cloud.database": ("ReadingsDB", "open_readings_db", "read_gaps"),
    })
