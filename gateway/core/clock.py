"""Wall-clock trust on a gateway without a real-time clock (docs/guarantees.md, "Clocks").

A board without an RTC boots with a wrong wall clock until NTP sets it. A
`ClockSource` says whether the system clock is synchronised and gives the
monotonic clock and the boot id; readings taken before the sync carry their
monotonic time and the boot id (`Unsynced`), and `settle_ts` decides, when
they are sent, what their `ts` is: re-based from the monotonic clock once the
clock is synchronised in the same boot, or kept and marked `unsynced` when it
cannot be (the clock is not synchronised yet, or the gateway rebooted since).

Pure: `MemoryClock` is the in-memory twin the tests drive; the system's
source (adjtimex, systemd-timesyncd, /proc) is `gateway.ops.clock`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.core.envelope import Undecodable, decode, encode

UNSYNCED = "unsynced"  # the envelope's `ts_quality` for a time that could not be re-based
_WALL0, _MONO0 = time.time(), time.monotonic()


def steady_time() -> float:
    """Unix seconds that move with the monotonic clock: the timers of a run (a held row's
    confirmation timeout) are not moved when the system clock steps (NTP's first sync on a
    board without an RTC moves it by years) or is set back."""
    return _WALL0 + (time.monotonic() - _MONO0)


class ClockSource(Protocol):
    """What the gateway knows about its clocks."""

    def synchronized(self) -> bool:
        """True once the system clock is set from a time source (NTP, GPS...)."""

    def monotonic(self) -> float:
        """Seconds on the clock that only moves forward within one boot."""

    def wall(self) -> float:
        """Unix seconds on the system clock."""

    @property
    def boot_id(self) -> str:
        """The kernel's id of the current boot."""


@dataclass(frozen=True, slots=True)
class Unsynced:
    """When a reading taken before the clock's sync was taken: monotonic seconds in a boot."""

    mono: float
    boot: str


def stamp(source: ClockSource, ts: float) -> Unsynced | None:
    """What a reading with wall time `ts` taken now must carry: None when the clock is trusted."""
    if source.synchronized():
        return None
    return Unsynced(source.monotonic() - (source.wall() - ts), source.boot_id)


def settle_ts(source: ClockSource, ts: float, taken: Unsynced | None) -> tuple[float, str | None]:
    """The `ts` and `ts_quality` to send for a reading (`taken`: from `stamp`)."""
    if taken is None:
        return ts, None
    if taken.boot == source.boot_id and source.synchronized():
        return source.wall() - (source.monotonic() - taken.mono), None
    return ts, UNSYNCED


def restamp(source: ClockSource, payload: bytes, ts: float, taken: Unsynced | None) -> bytes:
    """The payload to send for a stored one: re-based or marked when taken before the sync."""
    if taken is None:
        return payload
    env = decode(payload)
    if isinstance(env, Undecodable):
        return payload  # not ours to mend: the broker's limits and the consumer judge it
    sent_ts, quality = settle_ts(source, ts, taken)
    return encode(replace(env, ts=sent_ts, ts_quality=quality))


class MemoryClock:
    """An in-memory `ClockSource`: the tests set its time, its sync state and its boot."""

    def __init__(self, wall: float, *, synced: bool = False, boot: str = "boot-1") -> None:
        self.now_wall = wall
        self.now_mono = 100.0
        self.synced = synced
        self.boot = boot

    def synchronized(self) -> bool:
        return self.synced

    def monotonic(self) -> float:
        return self.now_mono

    def wall(self) -> float:
        return self.now_wall

    @property
    def boot_id(self) -> str:
        return self.boot

    def advance(self, seconds: float) -> None:
        """Both clocks move on."""
        self.now_wall += seconds
        self.now_mono += seconds

    def sync(self, step: float) -> None:
        """NTP sets the wall clock `step` seconds forward (or back) and the clock is trusted."""
        self.now_wall += step
        self.synced = True

    def reboot(self, boot: str) -> None:
        """A new boot: the monotonic clock starts again, the wall clock is untrusted."""
        self.boot, self.now_mono, self.synced = boot, 1.0, False


class TrustedClock:
    """A `ClockSource` whose wall clock is always taken as synchronised (the system's clocks)."""

    boot_id = "trusted"

    def synchronized(self) -> bool:
        return True

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
