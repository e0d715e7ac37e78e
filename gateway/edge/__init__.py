"""The gateway itself: drivers' records taken in (`ingest`), stored and published over MQTT
(`publisher`), end-to-end confirmations, SIGHUP reloads, the service that runs them all
(`Gateway`, `serve`), and the `status` report read from the store."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.edge.serve import serve
    from gateway.edge.service import Gateway
    from gateway.edge.status import StatusError, read_status, render_status

__all__ = [
    "Gateway",
    "StatusError",
    "read_status",
    "render_status",
    "serve",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.edge.serve": ("serve",),
        "gateway.edge.service": ("Gateway",),
        "gateway.edge.status": ("StatusError", "read_status", "render_status"),
    })
