"""The running gateway: devices -> intake -> group commit -> publisher -> broker.

Everything runs on one asyncio event loop (gateway/edge/serve.py runs it under
the signals). A stop closes the devices, commits what was read, waits a
bounded time for in-flight acknowledgements and marks the store's stop as
clean (so the epoch continues). A reload applies a new device map
(gateway/edge/reload.py). Under systemd the gateway sends READY=1, STATUS=,
STOPPING=1 and watchdog pings (gateway/ops/supervision.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from devices.registry import DRIVERS
from gateway.config.check import require_extras
from gateway.config.common import ConfigError
from gateway.config.credentials import BrokerSecrets
from gateway.config.gateway_config import DeviceConfig, GatewayConfig, load_gateway_config
from gateway.core.clock import ClockSource
from gateway.core.confirmation import CONFIRM_PACKET_LIMIT
from gateway.core.delivery import DeliveryClass
from gateway.core.extras import MissingExtras
from gateway.edge.confirm_tracker import ConfirmationTracker
from gateway.edge.ingest import DeviceSink, Intake
from gateway.edge.presence import Presence
from gateway.edge.publisher import Publisher, max_ages
from gateway.edge.reload import plan_reload
from gateway.edge.snapshot import GatewaySnapshot
from gateway.edge.summary import SummaryFigures, figures, summary_line
from gateway.mqtt.link import MqttLink, Session
from gateway.ops.clock import SystemClock
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
                 supervision: Supervision | None = None, version: str = "unknown", *,
                 clock: ClockSource | None = None) -> None:
        self.config = config
        self.supervision = supervision
        self.outbox = outbox
        self.intake = Intake(config, outbox.epoch, outbox.counters,
                             clock=SystemClock() if clock is None else clock)
        broker = config.broker
        self.link = MqttLink(broker.endpoints, broker.client_id, keepalive=broker.keepalive,
                             session_expiry=broker.session_expiry, clean_first=True,
                             secrets=secrets, max_packet_size=CONFIRM_PACKET_LIMIT)
        end_to_end = config.confirmation == "end-to-end"
        self.publisher = Publisher(self.link, outbox, self.intake, max_inflight=broker.max_inflight,
                                   max_payload_bytes=broker.max_payload_bytes,
                                   hold_for_confirmation=end_to_end, clock=self.intake.clock,
                                   batching=config.batching)
        self.publisher.max_ages = max_ages(config)
        outbox.on_full = config.store.on_full
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
        self.presence = Presence(self.link, config.gateway_id, broker.topics.prefix,
                                 outbox.epoch, [d.id for d in config.devices], version)
        self.sinks = {d.id: self._sink(d) for d in config.devices}
        self.devices: dict[str, asyncio.Task[None]] = {}
        self._devices_changed = asyncio.Event()
        self.committer_at = time.monotonic()

    def _sink(self, d: DeviceConfig) -> DeviceSink:
        end_to_end = self.tracker is not None
        sink = DeviceSink(d, self.intake,
                          {s.name: self.config.broker.topics.topic(d.id, s.name) for s in d.streams},
                          frozenset(s.name for s in d.streams
                                    if end_to_end and s.delivery is not DeliveryClass.AT_MOST_ONCE))
        sink.on_state = self.presence.device_state
        return sink

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
        log.info("connected to broker %s (MQTT %s) as %s (session %s, receive maximum %d, "
                 "QoS at most %d)", self.link.address, session.protocol, self.link.client_id,
                 "resumed" if session.session_present else "new", session.receive_maximum,
                 self.link.max_qos)
        self.publisher.connected(session)
        self.presence.connected()
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
        dropping = self.publisher.take_dropping()
        if not (pending or drops or acked or quarantined or confirmations or dropping):
            return
        try:
            result = self.outbox.commit(pending, acked, quarantined, drops, confirmations, dropping)
        except (sqlite3.Error, ValueError) as exc:
            # Nothing was written: the readings are counted, everything else waits for the next
            # commit (an ack kept is at worst a row sent again); settled rows stay settled.
            disk_full = isinstance(exc, DiskFullError)
            reason = "disk_full" if disk_full else "store_error"
            self.commit_failures += 1
            for r in pending:
                self.intake.drop(reason, r.device, r.stream)
            if confirmations is not None and self.tracker is not None:
                self.tracker.restore(confirmations.marks)
            self.publisher.give_back(dropping)
            for key, n in drops.items():
                self.intake.drops[key] += n
            # On a full disk the store logs when it fills and when it has room again.
            log.log(logging.DEBUG if disk_full else logging.ERROR, "store %s: commit failed "
                    "(%s); %d readings dropped and counted as %s", self.outbox.path, exc,
                    len(pending), reason)
            return
        # The overdue rows first: one this commit both held and found overdue is sent
        # again rather than let go as held (gateway/core/outbox_states.py).
        if resend:
            self.publisher.resend(resend)
        self.publisher.committed(acked, quarantined, held)
        self.stored += result.stored
        # Counted in the store by the commit itself; here for the summary line.
        for reason, n in (("store_full", result.refused), ("disk_full", result.disk_full),
                          ("evicted", result.evicted), ("expired", result.expired)):
            if n:
                self.intake.count_dropped(reason, n)
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
            full, now = self._commit_now.is_set(), time.monotonic()
            self._commit_now.clear()
            self.committer_at = now
            if full or self.intake.commit_due(now, interval):
                self.commit()
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
            store_bytes=self.outbox.bytes_used, confirmed=self.outbox.confirmed,
            confirmations_ignored=self.tracker.ignored_total if self.tracker else 0,
            broker_url=str(self.link.address), broker_max_qos=self.link.max_qos)

    def runtime_snapshot(self) -> dict[str, Any]:
        """What `status` shows about the running process."""
        return {
            "pid": os.getpid(),
            "updated_at": round(time.time(), 3),
            "broker_connected": self.broker_up,
            "broker": str(self.link.address),
            "broker_protocol": self.link.protocol,
            "broker_max_qos": self.link.max_qos,
            "broker_max_qos_source": self.link.broker.max_qos_source,
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
        last: SummaryFigures | None = None
        while True:
            await asyncio.sleep(self.config.summary_interval)
            i = self.intake
            now = figures(i.read, self.stored, self.publisher.acknowledged,
                          self.publisher.sent_volatile, i.rejected_by, i.dropped_by,
                          i.suppressed_total)
            if now == last and self.broker_up:
                continue
            last = now
            state = "connected" if self.broker_up else (
                f"unreachable for {time.monotonic() - (self._down_since or time.monotonic()):.0f}s")
            log.info("%s", summary_line(now, self.outbox.pending_bound(), state))

    # -- life cycle --------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> bool:
        """Run until `stop` is set, then shut down in order; False when a task died."""
        log.info("gateway %s starting: store %s, epoch %s (%s), %d devices, broker %s; "
                 "readings go to %s/#", self.config.gateway_id, self.outbox.path,
                 self.outbox.epoch, "continued after a clean stop" if self.outbox.continued
                 else "new", len(self.config.devices), self.link.address,
                 self.config.broker.topics.prefix)
        pending = self.outbox.pending_bound()
        if pending:
            log.info("store %s holds up to %d unacknowledged readings; sending them again",
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
        return (f"{'connected' if self.broker_up else 'broker unreachable'}; read "
                f"{self.intake.read}, stored {self.stored}, acknowledged "
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
        self.publisher.max_ages = max_ages(self.config)
        for device in self.config.devices:
            if device.id in plan.added or device.id in plan.changed:
                self.sinks[device.id] = self._sink(device)
                self._start_device(device)
        self._devices_changed.set()
        self.presence.devices_changed([d.id for d in self.config.devices])
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
        self.presence.stopping("stopped")  # written out before the DISCONNECT (MqttLink._close)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("stopped: up to %d readings still stored for the next start, %d in flight were "
                 "unacknowledged", self.outbox.pending_bound(), self.publisher.in_flight)
