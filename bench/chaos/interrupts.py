"""SIGTERM and SIGINT during a run: `Interrupted`, the signal handler the command
installs, and the stretch during which a signal waits its turn.

While the processes of a run are being stopped and the tmpfs unmounted
(`deferred_while_closing`), a signal is only noted; it is raised as
`Interrupted` once the closing is done, so every way out leaves nothing
running and nothing mounted.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_closing = False  # True while processes are being stopped: a signal then waits its turn
_pending_signal: str | None = None


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) asked the run to stop."""


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """Signal handler: raise `Interrupted`, or note the signal while closing."""
    global _pending_signal
    name = signal.Signals(signum).name
    if _closing:
        _pending_signal = name
        return
    raise Interrupted(name)


@contextmanager
def deferred_while_closing() -> Iterator[None]:
    """Hold signals back for the body; then raise `Interrupted` for one that came meanwhile."""
    global _closing, _pending_signal
    _closing = True
    try:
        yield
    finally:
        _closing = False
    pending, _pending_signal = _pending_signal, None
    if pending is not None:
        raise Interrupted(pending)
