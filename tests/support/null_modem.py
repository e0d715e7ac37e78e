"""A serial null-modem cable made of two real pseudo-terminals.

Each end is a pty whose device side (`/dev/pts/N`) a program opens as its
serial port; a thread copies every byte written on one end to the other, as
a crossed cable would. Both ends are put in raw mode so no byte is changed.

For Modbus RTU tests the cable can make a slave go silent: a chunk written
on end `a` (the master) whose first byte is a muted slave address is not
delivered, so that slave never sees the request and never answers, exactly
as a dead device on a multi-drop bus. (The master writes each request frame
in one write and waits for the answer, so a chunk is one frame.)
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty


class NullModem:
    """Two pty device paths, `a` and `b`, wired to each other."""

    def __init__(self) -> None:
        self._masters: list[int] = []
        self._slaves: list[int] = []
        paths = []
        for _ in range(2):
            master, slave = pty.openpty()
            tty.setraw(slave)
            self._masters.append(master)
            self._slaves.append(slave)  # held open so the master never reads EIO between opens
            paths.append(os.ttyname(slave))
        self.a, self.b = paths
        self.bytes_forwarded = 0
        self.muted: set[int] = set()
        self.frames_muted = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._forward, name="null-modem", daemon=True)
        self._thread.start()

    def _forward(self) -> None:
        first, second = self._masters
        peer = {first: second, second: first}
        while True:
            readable, _, _ = select.select([first, second, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if fd == first and data and data[0] in self.muted:
                    self.frames_muted += 1
                    continue
                view = memoryview(data)
                while view:
                    view = view[os.write(peer[fd], view):]
                self.bytes_forwarded += len(data)

    def close(self) -> None:
        """Stop forwarding and close both ptys."""
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (*self._masters, *self._slaves, self._stop_r, self._stop_w):
            os.close(fd)
