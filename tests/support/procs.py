"""The gateway and the consumer as real processes, with their logs in files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


class Service:
    """One `python -m gateway <command> --config FILE` process."""

    def __init__(self, command: str, config: Path, workdir: Path, name: str,
                 log_level: str = "DEBUG") -> None:
        self.command = command
        self.log_level = log_level
        self.config = config
        self.workdir = workdir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.logs: list[Path] = []
        self.env: dict[str, str] = {}  # added to the environment of each run (over PYTHONPATH too)
        self.launcher: list[str] = []  # a command that runs the service (e.g. tests/support/mdwe.py)

    @property
    def log_path(self) -> Path:
        """The log of the current (or last) run."""
        return self.logs[-1]

    def start(self) -> None:
        """Start a new run of the process, logging to a fresh file."""
        self.starts += 1
        log = self.workdir / f"{self.name}-{self.starts}.log"
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **self.env}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "gateway", self.command, "--config",
                 str(self.config), "--log-level", self.log_level],
                cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def log_text(self) -> str:
        """Everything the process logged, across all its runs."""
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def wait_log(self, pattern: str, timeout: float = 15.0, count: int = 1) -> None:
        """Wait until the current run's log matches `pattern` `count` times."""
        regex = re.compile(pattern)

        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     f"{self.log_path.read_text(errors='replace')[-3000:]}")
            return len(regex.findall(self.log_path.read_text(errors="replace"))) >= count

        wait_for(seen, timeout=timeout, what=f"{self.name} log /{pattern}/ x{count}")

    def kill(self) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def ensure_stopped(self) -> None:
        """Best-effort cleanup at the end of a test."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
