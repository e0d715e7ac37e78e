"""`mqtt-gateway run`: one `Gateway` on the event loop, under the service's signals.

SIGTERM/SIGINT stop it (it commits, waits a bounded time for in-flight
acknowledgements and marks the store's stop clean); SIGHUP reloads the device
map; one reload runs at a time. The metrics endpoint is loaded only when it
is configured.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from gateway.config.credentials import BrokerSecrets
from gateway.config.gateway_config import GatewayConfig
from gateway.edge.service import Gateway
from gateway.ops.supervision import Supervision
from gateway.store.outbox import Outbox

log = logging.getLogger("gateway")


async def serve(config: GatewayConfig, outbox: Outbox, secrets: BrokerSecrets | None = None,
                version: str = "unknown") -> bool:
    """Run a gateway until SIGTERM or SIGINT (SIGHUP reloads); False when it stopped on a failure."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervision = Supervision()
    gateway = Gateway(config, outbox, secrets, supervision, version)
    if config.metrics is not None:
        # Loaded only when asked for: prometheus-client costs ~2 MB of RSS.
        from gateway.edge.metrics import gateway_endpoint  # noqa: PLC0415

        supervision.metrics = gateway_endpoint(config, config.metrics, gateway.metrics_snapshot)
        gateway.link.on_latency = supervision.metrics.observe
    reloading: asyncio.Task[None] | None = None

    def on_hup() -> None:
        nonlocal reloading
        if reloading is not None and not reloading.done():
            log.warning("reload: one is already running; this SIGHUP is ignored")
            return
        reloading = loop.create_task(gateway.reload(), name="reload")

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        return await gateway.run(stop)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        if reloading is not None:
            reloading.cancel()
        await supervision.close()
