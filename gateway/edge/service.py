"""`mqtt-gateway run`: devices -> intake -> group commit -> publisher -> broker.

Everything runs on one asyncio event loop. SIGTERM/SIGINT stop the devices,
commit what was read, wait a bounded time for in-flight acknowledgements,
mark the store's stop as clean (so the epoch continues) and return 0.
SIGHUP reloads the device map (gateway/reload.py). Under systemd the
gateway sends READY=1, STATUS=, STOPPING=1 and watchdog pings
(gateway/supervision.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from devices.registry import DRIVERS
from gateway.config.check import require_extras
from gateway.config.common import ConfigError
from gateway.config.credentials import BrokerSecrets
from gateway.config.gateway_config import DeviceConfig, GatewayConfig, load_gateway_config
from gateway.core.delivery import DeliveryClass
from gateway.core.extras import MissingExtras
from gateway.edge.confirm_tracker import ConfirmationTracker
from gateway.edge.ingest import DeviceSink, Intake
from gateway.edge.publisher import Publisher
from gateway.edge.reload import plan_reload
from gateway.edge.snapshot import GatewaySnapshot
from gateway.mqtt.link import MqttLink, Session
from gateway.ops.supervision import Supervision
from gateway.ops.watchdog import Progress
from gateway.store.confirmations import Confirmations
from gateway.store.outbox import Outbox
from gateway.store.space import DiskFullError

log = logging.getLogger("gateway")

DRAIN_TIMEOUT = 5.0
RUNTIME_EVERY = 5.0


class Gateway:
    """The running gateway: one store, one link, one task per device."""

    def __init__(self, config: GatewayConfig, outbox: Outbox,
                 secrets: BrokerSecrets | None = None,
                 supervision: Supervision | None = None) -> None:
        self.config = config
        self.supervision = supervision
        self.outbox = outbox
        self.intake = Intake(config, outbox.epoch, outbox.counters)
        broker = config.broker
        self.link = MqttLink(broker.address, broker.client_id, keepalive=broker.keepalive,
                             session_expiry=broker.session_expiry, clean_first=True,
                             secrets=secrets)
        end_to_end = config.confirmation == "end-to-end"
        self.publisher = Publisher(self.link, outbox, self.intake, max_inflight=broker.max_inflight,
                                   max_payload_bytes=broker.max_payload_bytes,
                                   hold_for_confirmation=end_to_end,
                                   batching=config.batching)
        self.link.on_up = self._on_up
        self.link.on_down = self._on_down
        self.intake.on_volatile = self.publisher.wake
        self._commit_now = asyncio.Event()
        self.intake.on_batch_full = self._commit_now.set
        self.stored = 0
        self.commit_failures = 0
        self._store_full = False  # logged once per stretch of store_full refusals
        self.broker_up = False
        self._down_since: float | None = time.monotonic()
        self._down_logged = False
        self._runtime_at = 0.0
        self.tracker = (ConfirmationTracker(self.link, outbox, broker.topics.prefix,
                                            config.confirmation_timeout, str(config.path))
                        if end_to_end else None)
        self.sinks = {d.id: self._sink(d) for d in config.devices}
        self.devices: dict[str, asyncio.Task[None]] = {}
        self._devices_changed = asyncio.Event()
        self.committer_at = time.monotonic()

    def _sink(self, d: DeviceConfig) -> DeviceSink:
        end_to_end = self.tracker is not None
        return DeviceSink(d, self.intake,
                          {s.name: self.config.broker.topics.topic(d.id, s.name) for s in d.streams},
                          frozenset(s.name for s in d.streams
                                    if end_to_end and s.delivery is not DeliveryClass.AT_MOST_ONCE))

    def _start_device(self, d: DeviceConfig) -> asyncio.Task[None]:
        task = asyncio.create_task(DRIVERS[d.driver].start(d.id, d.options)(self.sinks[d.id]),
                                   name=f"device:{d.id}")
        self.devices[d.id] = task
        return task

    # -- link events -------------------------------------------------------
    def _on_up(self, session: Session) -> None:
        self.broker_up = True
        self._down_since = None
        self._down_logged = False
        log.info("connected to broker %s as %s (session %s, receive maximum %d)",
                 self.link.address, self.link.client_id,
                 "resumed" if session.session_present else "new", session.receive_maximum)
        self.publisher.connected(session)
        if self.tracker is not None:
            self.tracker.subscribe()

    def _on_down(self, reason: str) -> None:
        was_up, self.broker_up = self.broker_up, False
        if self._down_since is None:
            self._down_since = time.monotonic()
        if was_up or not self._down_logged:
            self._down_logged = True
            hint = ("check the client id, credentials and ACL the broker expects"
                    if self.link.refused else
                    f"to run a local broker: apt-get install mosquitto, or set broker.url in "
                    f"{self.config.path}")
            log.warning("%s; readings are kept in the store and sent when the broker is back "
                        "(%s)", reason, hint)

    # -- the group commit --------------------------------------------------
    def commit(self) -> None:
        """One group commit of everything waiting."""
        pending, drops = self.intake.take()
        acked, quarantined, held = self.publisher.take_settled()
        confirmations: Confirmations | None = None
        resend: list[int] = []
        if self.tracker is not None:
            confirmations, resend = self.tracker.take(held)
        if not (pending or drops or acked or quarantined or confirmations):
            return
        try:
            result = self.outbox.commit(pending, acked, quarantined, drops, confirmations)
        except (sqlite3.Error, ValueError) as exc:
            # Nothing was written: the readings are counted, everything else waits for the
            # next commit (an ack kept is at worst a row sent again, never a row lost). The
            # publisher's settled rows stay settled until a commit writes them.
            disk_full = isinstance(exc, DiskFullError)
            reason = "disk_full" if disk_full else "store_error"
            self.commit_failures += 1
            for r in pending:
                self.intake.drop(reason, r.device, r.stream)
            if confirmations is not None and self.tracker is not None:
                self.tracker.restore(confirmations.marks)
            for key, n in drops.items():
                self.intake.drops[key] += n
            if disk_full:  # the store logs when the disk fills and when it has room again
                log.debug("store %s: commit failed on a full disk (%s); %d readings dropped "
                          "and counted as disk_full", self.outbox.path, exc, len(pending))
            else:
                log.error("store %s: commit failed (%s); %d readings dropped and counted",
                          self.outbox.path, exc, len(pending))
            return
        # The overdue rows first: one this commit both held and found overdue is sent
        # again rather than let go as held (gateway/core/outbox_states.py).
        if resend:
            self.publisher.resend(resend)
        self.publisher.committed(acked, quarantined, held)
        self.stored += result.stored
        self.intake.dropped_total += result.refused + result.disk_full
        if result.refused and not self._store_full:
            self._store_full = True
            log.warning("store %s is full (%d bytes, max %d): new durable readings are refused "
                        "and counted as store_full until acknowledgements free space",
                        self.outbox.path, self.outbox.bytes_used, self.outbox.max_bytes)
        elif result.stored and self._store_full:
            self._store_full = False
            log.info("store %s has room again (%d bytes, max %d): storing new durable readings",
                     self.outbox.path, self.outbox.bytes_used, self.outbox.max_bytes)
        if result.stored:
            self.publisher.wake()

    async def _committer(self) -> None:
        interval = self.config.store.commit_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit_now.wait(), interval)
            self._commit_now.clear()
            self.committer_at = time.monotonic()
            self.commit()
            now = time.monotonic()
            if now - self._runtime_at >= RUNTIME_EVERY:
                self._runtime_at = now
                self._write_runtime()

    def _write_runtime(self) -> None:
        try:
            self.outbox.write_runtime(self.runtime_snapshot())
        except sqlite3.Error as exc:
            log.debug("runtime snapshot not written: %s", exc)

    def metrics_snapshot(self) -> GatewaySnapshot:
        """The figures the metrics collector exports (read from the metrics thread)."""
        return GatewaySnapshot(
            read=self.intake.read, stored=self.stored, published=self.link.published,
            acknowledged=self.publisher.acknowledged,
            at_most_once_sent=self.publisher.sent_volatile,
            at_most_once_queued=len(self.intake.volatile), in_flight=self.publisher.in_flight,
            broker_connected=self.broker_up, connections=self.link.connections,
            store_bytes=self.outbox.bytes_used)

    def runtime_snapshot(self) -> dict[str, Any]:
        """What `status` shows about the running process."""
        return {
            "pid": os.getpid(),
            "updated_at": round(time.time(), 3),
            "broker_connected": self.broker_up,
            "broker": str(self.link.address),
            "in_flight": self.publisher.in_flight,
            "at_most_once_queued": len(self.intake.volatile),
            "read": self.intake.read,
            "stored": self.stored,
            "acknowledged": self.publisher.acknowledged,
            "at_most_once_sent": self.publisher.sent_volatile,
            "resent_after_transient_ack": self.publisher.retries,
            "confirmation": self.config.confirmation,
            "store_disk_full": self.outbox.disk_full,
            **(self.tracker.figures() if self.tracker is not None else {}),
            **self.publisher.batch_figures(),
        }

    async def _summaries(self) -> None:
        last: tuple[int, ...] = ()
        while True:
            await asyncio.sleep(self.config.summary_interval)
            figures = (self.intake.read, self.stored, self.publisher.acknowledged,
                       self.publisher.sent_volatile, self.intake.dropped_total,
                       self.intake.suppressed_total)
            if figures == last and self.broker_up:
                continue
            last = figures
            backlog = self.outbox.pending_count()
            state = "connected" if self.broker_up else (
                f"unreachable for {time.monotonic() - (self._down_since or time.monotonic()):.0f}s")
            # Suppressed by report by exception: not a loss, shown apart from the drops.
            suppressed = f", suppressed {figures[5]}" if figures[5] else ""
            log.info("summary: read %d, stored %d, acknowledged %d, at-most-once sent %d, "
                     "dropped %d%s; backlog %d; broker %s", *figures[:5], suppressed, backlog,
                     state)

    # -- life cycle --------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> bool:
        """Run until `stop` is set, then shut down in order; False when a task died."""
        log.info("gateway %s starting: store %s, epoch %s (%s), %d devices, broker %s",
                 self.config.gateway_id, self.outbox.path, self.outbox.epoch,
                 "continued after a clean stop" if self.outbox.continued else "new",
                 len(self.config.devices), self.link.address)
        pending = self.outbox.pending_count()
        if pending:
            log.info("store %s holds %d unacknowledged readings; sending them again",
                     self.outbox.path, pending)
        core = [  # the pipeline: the watchdog's pings stop when one of them dies
            asyncio.create_task(self.link.run(), name="mqtt"),
            asyncio.create_task(self.publisher.run(), name="publisher"),
            asyncio.create_task(self._committer(), name="committer"),
        ]
        background = [*core, asyncio.create_task(self._summaries(), name="summaries")]
        for d in self.config.devices:
            self._start_device(d)
        self.publisher.wake()
        if self.supervision is not None:
            self.supervision.ready(
                f"running: {len(self.config.devices)} devices, store {self.outbox.path}",
                lambda: Progress(time.monotonic(), self.committer_at,
                                 not any(t.done() for t in core), self.broker_up,
                                 self.publisher.in_flight, self.publisher.settled),
                self.config.store.commit_interval, self._describe)
        stopper = asyncio.create_task(stop.wait())
        while True:
            changed = asyncio.create_task(self._devices_changed.wait())
            await asyncio.wait([stopper, changed, *background, *self.devices.values()],
                               return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if stop.is_set() or any(t.done() for t in (*background, *self.devices.values())):
                break
            self._devices_changed.clear()  # a reload swapped device tasks: wait on the new set
        devices = list(self.devices.values())
        failed = [t for t in (*background, *devices)
                  if t.done() and not t.cancelled() and t.exception() is not None]
        for task in failed:
            log.error("task %s failed: %r; stopping so the service manager restarts us",
                      task.get_name(), task.exception())
        if self.supervision is not None:
            self.supervision.stopping("stopping: committing and waiting for in-flight acks")
        await self._shutdown(devices, background)
        return not failed

    def _describe(self) -> str:
        state = "connected" if self.broker_up else "broker unreachable"
        return (f"{state}; read {self.intake.read}, stored {self.stored}, acknowledged "
                f"{self.publisher.acknowledged}, in flight {self.publisher.in_flight}")

    # -- SIGHUP --------------------------------------------------------------
    async def reload(self) -> None:
        """Read the config file again and apply its device map; keep the old one if it is bad."""
        path = self.config.path
        log.info("reload: reading %s (SIGHUP)", path)
        try:
            new = load_gateway_config(path, DRIVERS)
            require_extras(new, DRIVERS)  # a device whose library is missing would only fail
        except (ConfigError, MissingExtras) as exc:
            problems: Sequence[object] = exc.problems if isinstance(exc, ConfigError) else exc.lines
            for problem in problems:
                log.error("reload rejected: %s", problem)
            log.error("reload rejected: %d problem%s in %s; still running the previous config",
                      len(problems), "s" if len(problems) != 1 else "", path)
            return
        plan = plan_reload(self.config, new)
        for section in plan.needs_restart:
            log.warning("reload: the %s settings changed in %s; they take effect only after a "
                        "restart (the running values are kept)", section, path)
        if plan.empty:
            log.info("reload: the device map is unchanged")
            return
        stopping = [*plan.removed, *plan.changed]
        tasks = [self.devices.pop(d) for d in stopping if d in self.devices]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in stopping:
            self.sinks.pop(d, None)
        self.config = plan.config
        for device in self.config.devices:
            if device.id in plan.added or device.id in plan.changed:
                self.sinks[device.id] = self._sink(device)
                self._start_device(device)
        self._devices_changed.set()
        log.info("reload: device map applied from %s: added %s, removed %s, changed %s", path,
                 ",".join(plan.added) or "none", ",".join(plan.removed) or "none",
                 ",".join(plan.changed) or "none")

    async def _shutdown(self, devices: list[asyncio.Task[None]],
                        background: list[asyncio.Task[None]]) -> None:
        log.info("stopping: devices closed, committing what was read")
        for task in devices:
            task.cancel()
        await asyncio.gather(*devices, return_exceptions=True)
        self.commit()
        self.publisher.feeding = False
        self.publisher.flush()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self.publisher.in_flight and self.broker_up and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        unsent = list(self.intake.volatile)
        for item in unsent:
            self.intake.drop("shutdown", item.device, item.stream)
        self.intake.volatile.clear()
        self.commit()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("stopped: %d readings still stored for the next start, %d in flight were "
                 "unacknowledged", self.outbox.pending_count(), self.publisher.in_flight)


async def serve(config: GatewayConfig, outbox: Outbox, secrets: BrokerSecrets | None = None) -> bool:
    """Run a gateway until SIGTERM or SIGINT (SIGHUP reloads); False when it stopped on a failure."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervision = Supervision()
    gateway = Gateway(config, outbox, secrets, supervision)
    if config.metrics is not None:
        # Loaded only when asked for: prometheus-client costs ~2 MB of RSS.
        from gateway.edge.metrics import (  # noqa: PLC0415
            GATEWAY_METRICS,
            LATENCY_BUCKETS,
            LATENCY_HISTOGRAM,
            GatewayCollector,
        )
        from gateway.ops.metrics import MetricsEndpoint  # noqa: PLC0415

        supervision.metrics = MetricsEndpoint(
            config.metrics, GatewayCollector(gateway.metrics_snapshot, config), GATEWAY_METRICS,
            LATENCY_HISTOGRAM, LATENCY_BUCKETS)
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
