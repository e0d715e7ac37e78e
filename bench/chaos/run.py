"""One run in one confirmation mode: start the path, inject the scheduled faults with a
settle after each, put things back after an incident, stop everything, count.

`Options` is what a run is asked to do, `RunResult` what it found;
`run_mode` is the whole of it, start to finish, with every process stopped
and the tmpfs unmounted on the way out.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.chaos.faults import FaultInjector
from bench.chaos.figures import ClassFigures, count_figures
from bench.chaos.interrupts import deferred_while_closing
from bench.chaos.ledger import Ledger
from bench.chaos.schedule import KINDS, Episode, Params, schedule
from bench.chaos.watch import HarnessError, Watch
from tests.support.rig import DURABLE, Rig
from tests.support.tmpfs import Tmpfs

MODES = ("end-to-end", "broker")
GATEWAY_ID = "gw-chaos"


@dataclass(frozen=True)
class Options:
    """One run in one mode."""

    mode: str
    seed: int
    faults: int | None = None
    duration: float | None = None
    stall_max: float = 13.0
    tmpfs_bytes: int = 16 << 20
    settle_timeout: float = 60.0
    rate: float = 400.0
    kinds: tuple[str, ...] = KINDS
    max_incidents: int = 5


@dataclass
class RunResult:
    """What one mode's run found."""

    options: Options
    workdir: Path
    figures: dict[str, ClassFigures]
    faults: Counter[str]
    episodes: list[Episode]
    incidents: list[str]
    seconds: float
    gateway_exit: int | None

    @property
    def injected(self) -> int:
        """Faults injected."""
        return sum(self.faults.values())

    @property
    def passed(self) -> bool:
        """Every criterion of every class held and nothing went wrong in the run itself."""
        return (not self.incidents and self.gateway_exit == 0
                and all(f.ok for f in self.figures.values()))


class ChaosRun:
    """Starts the path in one mode, injects the faults, and judges the outcome."""

    def __init__(self, options: Options, workdir: Path, *,
                 progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.workdir = workdir
        self.progress = progress
        self.rng = random.Random(options.seed)
        self.tmpfs = Tmpfs(workdir / "state", options.tmpfs_bytes)
        self.rig: Rig | None = None
        self.episodes: list[Episode] = []
        self.incidents: list[str] = []
        self.faults: Counter[str] = Counter()
        self.started = time.monotonic()

    # -- life cycle --------------------------------------------------------
    def setup(self) -> None:
        """Mount the tmpfs, start broker, tap, consumer and gateway."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tmpfs.mount()
        extra = ("confirmation: end-to-end\nconfirmation_timeout: 1s\n"
                 if self.options.mode == "end-to-end" else "confirmation: broker\n")
        self.rig = Rig(self.workdir, gateway_id=GATEWAY_ID, via_proxy=True,
                       broker_persistent=False, gateway_extra=extra)
        rig = self.rig
        self.watch = Watch(rig)
        self.ledger = Ledger(rig)
        self.injector = FaultInjector(rig, self.tmpfs, self.watch, self.ledger, self.faults,
                                      seed=self.options.seed, rate=self.options.rate)
        rig.start_consumer()
        rig.start_gateway()
        connected = self.injector.gw_connected
        self.watch.wait(lambda: connected.count() >= 1, 20, "gateway connected to the broker")

    def close(self) -> int | None:
        """Stop everything (SIGTERM for the gateway first, to see it exit cleanly); unmount."""
        code: int | None = None
        try:
            if self.rig is not None:
                gw = self.rig.gateway
                if gw.proc is not None and gw.proc.poll() is None:
                    with contextlib.suppress(Exception):
                        code = gw.terminate(timeout=20)
                self.rig.close()
        finally:
            with contextlib.suppress(Exception):
                self.tmpfs.free()
            with contextlib.suppress(OSError):
                keep = self.workdir / "state-at-end"
                keep.mkdir(exist_ok=True)
                for path in self.tmpfs.path.glob("outbox.sqlite*"):
                    shutil.copy2(path, keep / path.name)
            self.tmpfs.unmount()
        return code

    def run(self) -> None:
        """Warm up, inject the faults, drain."""
        opts = self.options
        run_deadline = self.started + (opts.duration if opts.duration is not None
                                       else 60.0 * (opts.faults or 0) + 300.0)
        self._episode(0, "warmup", lambda ep, p: self.injector.send(p.after),
                      Params(0, 0, 50, 0.0, 0.0))
        kinds = schedule(self.rng, opts.kinds)
        index = 0
        while True:
            if opts.faults is not None and index >= opts.faults:
                break
            if time.monotonic() >= run_deadline:
                if opts.faults is not None:
                    self.incidents.append(f"run deadline reached after {index} of "
                                          f"{opts.faults} faults")
                break
            if len(self.incidents) >= opts.max_incidents:
                self.incidents.append("too many incidents; stopped injecting faults")
                break
            index += 1
            kind = next(kinds)
            params = Params.draw(self.rng, opts.stall_max)
            self._episode(index, kind, self.injector.for_kind(kind), params)
        self._episode(index + 1, "final", lambda ep, p: self.injector.send(p.after),
                      Params(0, 0, 50, 0.0, 0.0), final=True)

    def judge(self, seconds: float, gateway_exit: int | None) -> RunResult:
        """Count everything and evaluate the criteria of this mode."""
        figures = count_figures(self._rig, self.ledger, self.episodes, self.options.mode)
        return RunResult(self.options, self.workdir, figures, self.faults, self.episodes,
                         self.incidents, seconds, gateway_exit)

    # -- one episode -----------------------------------------------------------
    @property
    def _rig(self) -> Rig:
        assert self.rig is not None
        return self.rig

    def _episode(self, index: int, kind: str, inject: Callable[[Episode, Params], None],
                 params: Params, *, final: bool = False) -> None:
        rig = self._rig
        ep = Episode(index, kind, "", rig.next_n, rig.next_n - 1)
        started = time.monotonic()
        incidents = len(self.incidents)
        try:
            inject(ep, params)
            self._settle(ep, final=final)
        except (HarnessError, AssertionError) as exc:  # AssertionError: a rig wait timed out
            self.incidents.append(f"fault {index} ({kind} {ep.variant}".rstrip()
                                  + f"): {exc}")
            self._recover()
        ep.last_line = rig.next_n - 1
        ep.seconds = time.monotonic() - started
        self.episodes.append(ep)
        if self.progress is not None:
            self.progress(f"[{self.options.mode}] {index:>4} {kind:<13} {ep.variant:<40} "
                          f"lines {ep.first_line}..{ep.last_line} {ep.seconds:5.1f}s"
                          + (" INCIDENT" if len(self.incidents) > incidents else ""))

    def _settle(self, ep: Episode, *, final: bool = False) -> None:
        """Wait until the path is quiet: the outbox is empty and every durable line is
        accounted for (in `readings`, a consumer gap, or counted as not stored)."""
        ledger = self.ledger
        last = self._rig.next_n - 1
        timeout = self.options.settle_timeout * (2 if final and not self.incidents else 1)
        try:
            self.watch.wait(lambda: ledger.outbox_pending() == 0
                            and all(ledger.accounted(s) for s in DURABLE),
                            timeout, f"the path to settle through line {last}")
        except HarnessError as exc:
            raise HarnessError(f"{exc}; {ledger.describe_backlog(last)}") from None
        if final and not self.watch.soft_wait(lambda: ledger.delivered_line("amo", last), 10):
            ep.notes.append("the last at-most-once reading did not arrive")

    def _recover(self) -> None:
        """After an incident: put every part back up, so the run can go on."""
        rig = self._rig
        with contextlib.suppress(Exception):
            self.tmpfs.free()
        if rig.proxy is not None:
            rig.proxy.resume()
            rig.proxy.allow()
        if rig.tap is not None:
            rig.tap.release()
        if rig.device.master is None:
            rig.device.replug()
        if rig.broker.proc is None or rig.broker.proc.poll() is not None:
            rig.restart_broker()
        for name, service, start in (("consumer", rig.consumer, rig.start_consumer),
                                     ("gateway", rig.gateway, rig.start_gateway)):
            self.watch.expect[name] = True
            if service.proc is None or service.proc.poll() is not None:
                try:
                    start()
                except AssertionError as exc:
                    self.incidents.append(f"could not restart the {name}: {exc}")


def run_mode(options: Options, workdir: Path, *,
             progress: Callable[[str], None] | None = None) -> RunResult:
    """One mode, start to finish; everything stopped and unmounted on the way out."""
    chaos = ChaosRun(options, workdir, progress=progress)
    started = time.monotonic()
    gateway_exit: int | None = None
    try:
        chaos.setup()
        chaos.run()
        result = chaos.judge(time.monotonic() - started, None)
    finally:
        with deferred_while_closing():
            gateway_exit = chaos.close()
    result.gateway_exit = gateway_exit
    return result
