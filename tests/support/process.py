"""A broker process of a test's own: found on PATH, started, SIGKILLed or stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import IO

from tests.support.ports import port_open
from tests.support.waiting import wait_for


def find_binary(name: str, package: str) -> str:
    """Path of `name` on PATH or in /usr/sbin, or an error naming the Debian package."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                   else None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install {package})")
    return found


class BrokerProcess:
    """One server process listening on `port`; subclasses set the command and the log."""

    port: int
    log_path: Path
    start_timeout = 10.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def _popen(self, argv: list[str], output: IO[bytes] | int) -> None:
        self.proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        proc = self.proc
        wait_for(lambda: port_open(self.port) or proc.poll() is not None,
                 timeout=self.start_timeout, what=f"{Path(argv[0]).name} on port {self.port}")
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(argv[0]).name} exited: "
                               f"{self.log_path.read_text(errors='replace')[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the server: whatever it had not saved is gone."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        """SIGTERM the server and wait for it (it saves its state)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
