"""A serial sensor on a real pseudo-terminal, behind a stable symlink.

The gateway opens the symlink as its serial port. `unplug()` closes the
terminal (reads on the gateway side fail, as when a USB adapter is pulled);
`replug()` makes a new terminal and points the symlink at it.
"""

from __future__ import annotations

import json
import os
import pty
import tty
from pathlib import Path
from typing import Any


class PtyDevice:
    """The device end of a pty whose other end the gateway reads."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None
        self.lines_written = 0
        self.unplugs = 0
        self.plug()

    def plug(self) -> None:
        """Create a new pty and point the symlink at its device end."""
        master, slave = pty.openpty()
        tty.setraw(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)
        self.master, self.slave = master, slave

    def unplug(self) -> None:
        """Close the pty: the gateway's reads fail until `replug()`."""
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        self.unplugs += 1

    def replug(self) -> None:
        """A new pty behind the same symlink."""
        self.plug()

    def write_raw(self, data: bytes) -> None:
        """Bytes as the sensor would send them."""
        assert self.master is not None, "device is unplugged"
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def send(self, fields: dict[str, Any]) -> None:
        """One JSON line."""
        self.write_raw(json.dumps(fields).encode() + b"\n")
        self.lines_written += 1

    def close(self) -> None:
        """Release the pty and the symlink."""
        if self.master is not None:
            self.unplug()
        if self.link.is_symlink():
            self.link.unlink()
