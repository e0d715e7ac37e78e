"""Watching the running path: its logs, whether its processes are still up, and waits
with a deadline.

`HarnessError` is what the run raises when something it waited for did not
happen in time, or when a process exited on its own: an incident of the run
itself, not a broken guarantee.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.procs import Service
from tests.support.rig import Rig


class HarnessError(Exception):
    """Something the run waited for did not happen in time, or a process died on its own."""


class LogCounter:
    """Counts matches of a pattern across every run's log of a service, incrementally."""

    def __init__(self, service: Service, pattern: str) -> None:
        self.service = service
        self.regex = re.compile(pattern, re.IGNORECASE)
        self._offsets: dict[Path, int] = {}
        self._count = 0

    def count(self) -> int:
        for path in list(self.service.logs):
            start = self._offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # whole lines only
            if end:
                self._count += len(self.regex.findall(data[:end].decode(errors="replace")))
                self._offsets[path] = start + end
        return self._count


class Watch:
    """Polls conditions on the rig, failing fast when a process that should run has exited.

    `expect` says which of the gateway and the consumer should be running; a
    fault that kills one on purpose clears its flag until it is started again.
    """

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.expect = {"gateway": True, "consumer": True}

    def check_alive(self) -> None:
        """HarnessError when the gateway or the consumer exited while expected to run."""
        rig = self.rig
        for name, service in (("gateway", rig.gateway), ("consumer", rig.consumer)):
            if self.expect[name] and service.proc is not None and service.proc.poll() is not None:
                tail = service.log_path.read_text(errors="replace")[-1500:]
                raise HarnessError(f"the {name} exited on its own with code "
                                   f"{service.proc.returncode}; its log ends:\n{tail}")

    def wait(self, condition: Callable[[], object], timeout: float, what: str) -> None:
        """Poll `condition` until true; HarnessError after `timeout` or when a process died."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if condition():
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.03)

    def soft_wait(self, condition: Callable[[], object], timeout: float) -> bool:
        """Like `wait` but only says whether it happened."""
        try:
            self.wait(condition, timeout, "")
        except HarnessError:
            self.check_alive()
            return False
        return True
