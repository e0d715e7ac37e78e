"""The optional top-level `batching:` block of the gateway config (docs/contracts.md).

Absent: one reading per message (wire format v1). Present: stored readings go
in v2 batches of one device and delivery class (`gateway.core.batch`).
"""

from __future__ import annotations

from gateway.config.reader import MapReader
from gateway.core.batch import BatchPolicy
from gateway.core.batch_wire import COMPRESSIONS, MAX_BATCH_READINGS


def read_batching(root: MapReader) -> BatchPolicy | None:
    """The batching policy; None when it is off (or wrong: the problem is recorded)."""
    section = root.mapping("batching")
    if section is None:
        return None
    max_readings = section.integer("max_readings", default=100, minimum=1,
                                   maximum=MAX_BATCH_READINGS)
    max_delay = section.duration("max_delay", default=2.0, minimum=0.0, maximum=3600.0)
    compression = section.choice("compression", COMPRESSIONS, default="none")
    section.finish()
    if max_readings is None or compression is None:
        return None
    return BatchPolicy(max_readings, max_delay, compression)
