"""Fault injection against the rig: the seven fault kinds, each with the device sending
lines before, during (where a device can) and after it.

Each fault is a method taking the `Episode` it belongs to and its `Params`;
`FaultInjector.for_kind` maps the schedule's kind names to them. A fault
counts itself in `faults` (by the names of `schedule.FAULT_COUNTERS`) once
it is injected, and returns when the device has sent its last line; the run
then waits for the path to settle. A fault that cannot finish raises
`HarnessError` (or AssertionError from a rig wait).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Callable

from bench.chaos.ledger import Ledger
from bench.chaos.schedule import Episode, Params
from bench.chaos.watch import HarnessError, LogCounter, Watch
from tests.support.rig import DURABLE, Rig
from tests.support.tmpfs import Tmpfs

SLOW_LINK_BYTES_PER_S = 4000
RESUME_TIMEOUT = 120.0  # longest wait for the gateway to store again after a full disk


class FaultInjector:
    """Injects faults into a running rig and drives the device around them."""

    def __init__(self, rig: Rig, tmpfs: Tmpfs, watch: Watch, ledger: Ledger,
                 faults: Counter[str], *, seed: int, rate: float) -> None:
        self.rig = rig
        self.tmpfs = tmpfs
        self.watch = watch
        self.ledger = ledger
        self.faults = faults
        self.seed = seed
        self.rate = rate
        self.link_faults = 0
        self.gw_connected = LogCounter(rig.gateway, r"connected to broker")
        self.gw_lost = LogCounter(rig.gateway, r"connection to .* lost")
        self.gw_device_up = LogCounter(rig.gateway, r"device=dev up")
        self.gw_device_down = LogCounter(rig.gateway, r"device=dev down")
        self.gw_disk = LogCounter(rig.gateway, r"commit failed|disk (is )?full")
        self.consumer_subscribed = LogCounter(rig.consumer, r"subscribed to")

    def for_kind(self, kind: str) -> Callable[[Episode, Params], None]:
        """The fault of a kind named in `schedule.KINDS`."""
        return {
            "broker_kill": self.broker_kill,
            "gateway_kill": self.gateway_kill,
            "consumer_kill": self.consumer_kill,
            "link": self.link,
            "serial_unplug": self.serial_unplug,
            "disk_full": self.disk_full,
            "slow_link": self.slow_link,
        }[kind]

    def send(self, count: int, per_second: float | None = None) -> None:
        """The device sends `count` lines (at the run's rate unless told otherwise)."""
        self.rig.send(count, per_second=per_second or self.rate)

    def wait_stored(self, timeout: float = 20.0) -> None:
        """Wait until the gateway stored the last line sent, for every durable stream."""
        last = self.rig.next_n - 1
        self.watch.wait(lambda: all(self.ledger.stored_through(s, last) for s in DURABLE), timeout,
                        f"the gateway to store line {last}")

    def broker_kill(self, ep: Episode, p: Params) -> None:
        """SIGKILL the broker, send meanwhile (the gateway stores), restart it on the same port."""
        rig, watch = self.rig, self.watch
        self.send(p.before)
        gw_before = self.gw_connected.count()
        sub_before = self.consumer_subscribed.count()
        tap_before = rig.tap.subscriptions if rig.tap is not None else 0
        if rig.tap is not None:
            rig.tap.hold()  # see WireTap.hold: no stray subscriber while the consumer is away
        rig.broker.kill()
        self.faults["broker SIGKILL"] += 1
        self.send(p.during)  # read and stored while the broker is down
        self.wait_stored()
        rig.restart_broker()
        watch.wait(lambda: self.gw_connected.count() > gw_before, 40,
                   "the gateway to reconnect after the broker restart")
        watch.wait(lambda: self.consumer_subscribed.count() > sub_before, 40,
                   "the consumer to subscribe again after the broker restart")
        if rig.tap is not None:
            rig.tap.release()
            tap = rig.tap
            if not watch.soft_wait(lambda: tap.subscriptions > tap_before, 10):
                ep.notes.append("the wire tap did not resubscribe within 10s")
        self.send(p.after)

    def gateway_kill(self, ep: Episode, p: Params) -> None:
        """SIGKILL the gateway once what it read is through, and restart it."""
        rig = self.rig
        self.send(p.before)
        # The device pauses until what was read is committed, and the at-most-once
        # readings (memory only) are through, so the kill loses nothing that was read.
        self.wait_stored()
        last = rig.next_n - 1
        if not self.watch.soft_wait(lambda: self.ledger.delivered_line("amo", last), 10):
            ep.notes.append(f"at-most-once line {last} not through before the kill")
        self.watch.expect["gateway"] = False
        rig.gateway.kill()
        self.faults["gateway SIGKILL"] += 1
        rig.start_gateway()
        self.watch.expect["gateway"] = True
        self.send(p.after)

    def consumer_kill(self, ep: Episode, p: Params) -> None:
        """SIGKILL the consumer, send meanwhile (the broker queues the durable ones), restart."""
        rig = self.rig
        self.send(p.before)
        self.watch.expect["consumer"] = False
        rig.consumer.kill()
        self.faults["consumer SIGKILL"] += 1
        self.send(p.during)  # the broker queues the durable ones for the consumer's session
        try:
            rig.start_consumer()
        except AssertionError as exc:
            raise HarnessError(f"consumer restart: {exc}") from exc
        self.watch.expect["consumer"] = True
        self.send(p.after)

    def link(self, ep: Episode, p: Params) -> None:
        """Stall the proxy's link for a while, or cut it: the two alternate."""
        proxy = self.rig.proxy
        assert proxy is not None
        watch = self.watch
        self.link_faults += 1
        # Stall and cut alternate; which one comes first is drawn from the seed.
        if (self.link_faults + self.seed) % 2:
            ep.variant = f"stall {p.stall_seconds:.1f}s"
            self.send(p.before)
            lost_before = self.gw_lost.count()
            connected_before = self.gw_connected.count()
            proxy.stall()
            self.faults["link stall"] += 1
            until = time.monotonic() + p.stall_seconds
            self.send(p.during)
            self.wait_stored()  # no acks come back: the rows wait in the outbox
            watch.soft_wait(lambda: time.monotonic() >= until, p.stall_seconds + 1)
            proxy.resume()
            if self.gw_lost.count() > lost_before:
                ep.variant += " (gateway gave up the link)"
                watch.wait(lambda: self.gw_connected.count() > connected_before, 40,
                           "the gateway to reconnect after the stall")
        else:
            ep.variant = "cut"
            self.send(p.before)
            connected_before = self.gw_connected.count()
            proxy.cut()
            self.faults["link cut"] += 1
            self.send(p.during)
            watch.wait(lambda: self.gw_connected.count() > connected_before, 40,
                       "the gateway to reconnect after the cut")
        self.send(p.after)

    def slow_link(self, ep: Episode, p: Params) -> None:
        """Pace the proxy's link to a cellular-like 4 KB/s (32 kbit/s) for the stall's length
        while the device sends: readings queue in the outbox and drain once it is fast again."""
        proxy = self.rig.proxy
        assert proxy is not None
        ep.variant = f"{SLOW_LINK_BYTES_PER_S // 1000} KB/s for {p.stall_seconds:.1f}s"
        self.send(p.before)
        proxy.slow(SLOW_LINK_BYTES_PER_S)
        self.faults["slow link"] += 1
        until = time.monotonic() + p.stall_seconds
        self.send(p.during)
        self.wait_stored()
        self.watch.soft_wait(lambda: time.monotonic() >= until, p.stall_seconds + 1)
        proxy.fast()
        self.send(p.after)

    def serial_unplug(self, ep: Episode, p: Params) -> None:
        """Unplug the serial device once what it sent is stored; replug it behind the same name."""
        rig, watch = self.rig, self.watch
        self.send(p.before)
        self.wait_stored()  # bytes still in the pty when it closes were never read
        down_before = self.gw_device_down.count()
        up_before = self.gw_device_up.count()
        rig.unplug_device()
        self.faults["serial unplug"] += 1
        watch.wait(lambda: self.gw_device_down.count() > down_before, 20,
                   "the gateway to notice the unplug")
        rig.device.replug()
        # Opening a port flushes its input: the device waits until the gateway is back.
        watch.wait(lambda: self.gw_device_up.count() > up_before, 20,
                   "the gateway to reopen the replugged device")
        self.send(p.after)

    def disk_full(self, ep: Episode, p: Params) -> None:
        """Fill the store's tmpfs, send for a while, free it, send until a line is stored again."""
        watch = self.watch
        self.send(p.before)
        self.wait_stored()
        failures_before = self.gw_disk.count()
        # SQLite writes a WAL from its start again after a checkpoint and keeps the file
        # at its largest size, so a store can go on committing on a full disk until its
        # WAL has to grow. Truncate the WAL first (SQLite's own checkpoint, from a
        # connection of ours), so the full disk bites at the gateway's next commits.
        with contextlib.suppress(sqlite3.Error):
            conn = sqlite3.connect(self.rig.store_path, timeout=5)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.close()
        ballast = self.tmpfs.fill()
        self.faults["disk full"] += 1
        ep.variant = f"{ballast >> 10} KiB ballast, held {p.disk_seconds:.1f}s"
        self.send(p.during, per_second=max(10.0, p.during / p.disk_seconds))
        last = self.rig.next_n - 1
        # Keep the disk full until the gateway tried to commit the last line.
        if not watch.soft_wait(lambda: self.gw_disk.count() > failures_before
                               or all(self.ledger.stored_through(s, last) for s in DURABLE), 5):
            ep.notes.append("no commit attempt seen while the disk was full")
        if self.gw_disk.count() > failures_before:
            ep.notes.append("the gateway logged the full disk")
        self.tmpfs.free()
        # The gateway stores again once it notices the room (it may hold off looking for
        # a while). The device goes on with one line every 0.2 s until one is stored;
        # the lines dropped meanwhile count as this fault's, and the table shows them.
        ep.freed_line = self.rig.next_n
        freed_at = time.monotonic()
        while True:
            self.send(1)
            if watch.soft_wait(self.ledger.stored_up_to(self.rig.next_n - 1), 0.2):
                break
            if time.monotonic() - freed_at > RESUME_TIMEOUT:
                raise HarnessError(f"the gateway stored nothing for {RESUME_TIMEOUT:.0f}s after "
                                   "the disk space was freed")
        ep.resume_seconds = time.monotonic() - freed_at
        self.send(p.after)
