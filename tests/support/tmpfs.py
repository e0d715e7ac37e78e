"""A small tmpfs for a directory, to fill its disk for real and free it again.

Mounting needs root (the tests run as root). `fill()` writes a ballast file
until the filesystem answers ENOSPC; `free()` deletes it. `unmount()` is safe
to call more than once and falls back to a lazy unmount when something still
holds a file open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BALLAST_NAME = ".chaos-ballast"


def is_mountpoint(path: Path) -> bool:
    """True when `path` is a mount point (per /proc/self/mountinfo)."""
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return os.path.ismount(target)
    return any(line.split()[4] == target for line in lines if len(line.split()) > 4)


class Tmpfs:
    """A tmpfs of `size_bytes` mounted on `path` (created when missing)."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.ballast = path / BALLAST_NAME
        self.mounted = False
        self.fills = 0

    def mount(self) -> None:
        """Mount it.

        Raises:
            RuntimeError: mount failed (not root, no tmpfs support); the message says why.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if any(self.path.iterdir()):
            raise RuntimeError(f"{self.path} is not empty; refusing to mount a tmpfs over it")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0755", "tmpfs",
             str(self.path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs on {self.path} (needs root): "
                               f"{done.stderr.strip() or done.returncode}")
        self.mounted = True

    def free_bytes(self) -> int:
        """Bytes still free for an unprivileged writer."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write ballast until the disk is full; the bytes written."""
        written = 0
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12):  # 1 MiB blocks, then pages for the rest
                block = b"\0" * chunk
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        self.fills += 1
        return written

    def free(self) -> None:
        """Delete the ballast: the space is back."""
        with contextlib.suppress(FileNotFoundError):
            self.ballast.unlink()

    def unmount(self) -> None:
        """Unmount (lazily when busy); nothing happens when not mounted."""
        if not self.mounted and not is_mountpoint(self.path):
            return
        done = subprocess.run(["umount", str(self.path)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0 and is_mountpoint(self.path):
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
        self.mounted = is_mountpoint(self.path)


@contextmanager
def mounted_tmpfs(path: Path, size_bytes: int = 6 << 20) -> Iterator[Tmpfs]:
    """A tmpfs mounted at `path` for a test; the test fails (not skips) if it cannot mount."""
    disk = Tmpfs(path, size_bytes)
    try:
        disk.mount()
    except RuntimeError as exc:
        pytest.fail(f"this test fills a real disk and must mount a tmpfs (run as root): {exc}")
    try:
        yield disk
    finally:
        disk.unmount()  # lazily if a process still holds it
