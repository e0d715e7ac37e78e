"""Splitting a byte stream into lines, with a hard cap on memory.

`LineFramer` owns the framing rules for line-oriented serial devices: a line
ends at b"\\n" (a trailing b"\\r" is dropped), and a line longer than the cap
is reported once and discarded up to its newline, so no input can make the
buffer grow past the cap. It is pure: bytes in, events out, no I/O. `Rejected`
(devices/base.py) is the outcome every decoder shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.base import EXCERPT_BYTES, Rejected, excerpt

LINE_TOO_LONG = "line_too_long"
LINE_TRUNCATED = "line_truncated"


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line, without its b"\\n" or b"\\r\\n" terminator."""

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise TypeError(f"Line.data must be bytes, not {type(self.data).__name__}")



FramerEvent = Line | Rejected



class LineFramer:
    """Turns chunks of bytes into `Line` and `Rejected` events.

    At most `max_line_bytes + 1` bytes are ever buffered (the extra byte is
    a b"\\r" that may turn out to be part of the terminator).
    """

    def __init__(self, max_line_bytes: int) -> None:
        """Create a framer.

        Args:
            max_line_bytes: The longest line accepted, not counting its terminator.

        Raises:
            ValueError: If `max_line_bytes` is not positive.
        """
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        self._pending = bytearray()
        self._discarding = False

    @property
    def buffered_bytes(self) -> int:
        """How many bytes of an unfinished line are held."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[FramerEvent]:
        """Consume a chunk of input.

        Args:
            data: The next bytes read from the device, of any length.

        Returns:
            The lines completed and the over-long lines rejected by this chunk, in order.
        """
        events: list[FramerEvent] = []
        start = 0
        size = len(data)
        while start < size:
            end = data.find(b"\n", start)
            if self._discarding:
                if end < 0:
                    return events
                self._discarding = False
                start = end + 1
                continue
            stop = size if end < 0 else end
            # Copy no more than can still fit, so a huge chunk never lands in the buffer.
            room = self.max_line_bytes + 2 - len(self._pending)
            self._pending += data[start : min(stop, start + room)]
            overflow = stop - start > room
            if end < 0:
                if overflow or self._too_long_unfinished():
                    events.append(self._too_long())
                    self._pending.clear()
                    self._discarding = True
                return events
            start = end + 1
            if self._pending.endswith(b"\r") and not overflow:
                del self._pending[-1]
            if overflow or len(self._pending) > self.max_line_bytes:
                events.append(self._too_long())
            else:
                events.append(Line(bytes(self._pending)))
            self._pending.clear()
        return events

    def reset(self) -> Rejected | None:
        """Forget buffered input because the source went away.

        Returns:
            A `line_truncated` reject when an unfinished line was dropped, else None.
        """
        dropped = bytes(self._pending)
        self._pending.clear()
        self._discarding = False
        if not dropped:
            return None
        return Rejected(LINE_TRUNCATED, f"input ended inside a line: {excerpt(dropped)}")

    def _too_long_unfinished(self) -> bool:
        """True when the unfinished line can no longer fit, whatever comes next."""
        held = len(self._pending)
        if held <= self.max_line_bytes:
            return False
        return held > self.max_line_bytes + 1 or not self._pending.endswith(b"\r")

    def _too_long(self) -> Rejected:
        """The reject for the over-long line whose start is buffered."""
        # Quote a prefix that every chunking of the input has buffered, so the
        # detail does not depend on how the bytes happened to arrive.
        prefix = bytes(self._pending[: min(self.max_line_bytes, EXCERPT_BYTES)])
        return Rejected(
            LINE_TOO_LONG, f"line longer than {self.max_line_bytes} bytes: {excerpt(prefix)}..."
        )


def first_line(exc: BaseException, limit: int = 60) -> str:
    """The first line of an exception's message (or its type's name), cut to `limit`."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
