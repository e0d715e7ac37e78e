"""Log lines for operators: one line per event, UTC time, level, logger.

Under systemd (stderr is the journal stream named in $JOURNAL_STREAM) the
time is left out, because journald stamps each line itself, and each line
starts with a syslog priority `<N>` so `journalctl -p warning` works.
Every line goes through `mask_secrets` (gateway/core/redact.py): no password
reaches the journal, whichever part of the program (or library) logged it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from gateway.core.redact import mask_secrets

# syslog priorities (sd-daemon.h: SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>", SD_DEBUG "<7>")
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
            logging.DEBUG: 7}


class _UtcFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class JournalFormatter(logging.Formatter):
    """`<N>LEVEL logger: message` with the syslog priority of the level, no time."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """One record; continuation lines (a traceback) carry the same priority."""
        level = max((lv for lv in PRIORITY if lv <= record.levelno), default=logging.DEBUG)
        prefix = f"<{PRIORITY[level]}>"
        text = mask_secrets(super().format(record))
        return "\n".join(prefix + line for line in text.split("\n"))


def journal_stream(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal connection systemd named in $JOURNAL_STREAM."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


def setup_logging(level: str = "INFO") -> None:
    """Send log lines to stderr (journald picks them up under systemd)."""
    handler = logging.StreamHandler(sys.stderr)
    if journal_stream(sys.stderr):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
