"""The system's `ClockSource` (gateway.core.clock): is the wall clock synchronised?

Asked of, in order:
- the kernel: `adjtimex` with no change (modes 0); the clock is synchronised
  when its status lacks STA_UNSYNC and the call does not return TIME_ERROR.
  Under the shipped unit the call is filtered (ProtectClock=), so:
- systemd-timesyncd's flag file `/run/systemd/timesync/synchronized`, which
  it creates at its first sync in a boot.
When neither can be asked (no timesyncd, adjtimex refused) the clock is taken
as synchronised, as before this check existed, and that is logged once.
Once synchronised, the clock stays trusted for the rest of the process: a
clock set once drifts by seconds a day at most, not by years.

The answer is kept for a second (on the monotonic clock), so asking per
reading costs no system call. The boot id is `MQTT_GATEWAY_BOOT_ID` (the unit
passes systemd's `%b`, as ProcSubset=pid hides /proc/sys) or the kernel's
/proc/sys/kernel/random/boot_id.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("gateway.clock")

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
BOOT_ID_ENV = "MQTT_GATEWAY_BOOT_ID"
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_RECHECK = 1.0  # seconds between two looks at the kernel


class _Timex(ctypes.Structure):
    # struct timex up to `status`; the rest (tick, pps, tai, padding) is room only.
    _fields_ = (("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_byte * 512))


def kernel_synchronized() -> bool | None:
    """The kernel's view (adjtimex), or None when it cannot be asked."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None  # EPERM under a seccomp filter
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def read_boot_id() -> str:
    """The id of the current boot ('unknown' when the system does not say)."""
    given = os.environ.get(BOOT_ID_ENV, "").strip()
    if given and len(given) <= 64:
        return given
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii")[:64].strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


class SystemClock:
    """The running system's clocks and sync state."""

    def __init__(self, *, flag: Path = TIMESYNC_FLAG) -> None:
        self._flag = flag
        self._boot = read_boot_id()
        self._synced = False
        self._checked_at: float | None = None
        self._unknown_logged = False

    @property
    def boot_id(self) -> str:
        return self._boot

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def synchronized(self) -> bool:
        if self._synced:
            return True
        now = time.monotonic()
        if self._checked_at is not None and now - self._checked_at < _RECHECK:
            return False
        self._checked_at = now
        self._synced = self._ask()
        if self._synced:
            log.info("system clock synchronised: readings from now on carry its time; earlier "
                     "ones of this boot (boot_id %s) are re-based when sent", self._boot)
        return self._synced

    def _ask(self) -> bool:
        kernel = kernel_synchronized()
        if kernel:
            return True
        try:
            if self._flag.exists():
                return True
        except OSError:
            pass
        if kernel is None and not self._flag.parent.exists():
            if not self._unknown_logged:
                self._unknown_logged = True
                log.warning("cannot tell whether the system clock is synchronised (adjtimex "
                            "refused, no %s): readings carry its time as it is", self._flag)
            return True
        return False
