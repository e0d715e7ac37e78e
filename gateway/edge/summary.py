"""The periodic summary line: what was read, stored, sent, and what did not get through.

Two kinds of "did not get through" are named apart, each with its reasons:

- rejected input: lines or fields a device sent that never became a reading
  (bad_json, not_an_object, missing_field, bad_value, ...);
- dropped readings: readings that existed and were lost (store_full,
  disk_full, at_most_once_buffer_full, too_large, store_error, shutdown) or dropped
  on purpose (evicted by `store.on_full: drop-oldest`, expired past a stream's `max_age`).

Suppressed values (report by exception) are neither: they are shown apart.
Pure formatting; the line is always one line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

MAX_REASONS = 4  # reasons shown per kind; the rest are summed as "other"
# The drop reasons that are readings lost; every other reason is input rejected.
LOST = frozenset({"store_full", "disk_full", "store_error", "at_most_once_buffer_full",
                  "too_large", "shutdown", "evicted", "expired"})


@dataclass(frozen=True)
class SummaryFigures:
    """Everything one summary line shows (cumulative since the start)."""

    read: int
    stored: int
    acknowledged: int
    at_most_once_sent: int
    rejected: tuple[tuple[str, int], ...]
    dropped: tuple[tuple[str, int], ...]
    suppressed: int


def figures(read: int, stored: int, acknowledged: int, sent: int, rejected: Counter[str],
            dropped: Counter[str], suppressed: int) -> SummaryFigures:
    """Freeze the counters (so two summaries compare equal when nothing changed)."""
    return SummaryFigures(read, stored, acknowledged, sent, tuple(sorted(rejected.items())),
                          tuple(sorted(dropped.items())), suppressed)


def by_reason(counts: tuple[tuple[str, int], ...]) -> str:
    """`5 (bad_json 3, missing_field 2)`, the largest first; `0` when there are none."""
    total = sum(n for _, n in counts)
    shown = sorted((pair for pair in counts if pair[1]), key=lambda p: (-p[1], p[0]))
    if not shown:
        return str(total)
    parts = [f"{reason} {n}" for reason, n in shown[:MAX_REASONS]]
    rest = sum(n for _, n in shown[MAX_REASONS:])
    if rest:
        parts.append(f"other {rest}")
    return f"{total} ({', '.join(parts)})"


def split_drops(drops: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The store's drop counts by reason as (rejected input, dropped readings)."""
    rejected = {reason: n for reason, n in drops.items() if reason not in LOST}
    return rejected, {reason: n for reason, n in drops.items() if reason in LOST}


def summary_line(f: SummaryFigures, backlog: int, broker: str) -> str:
    """The summary line, without the leading `summary: `'s logger prefix; `backlog` is a
    bound of the readings stored (`Outbox.pending_bound`: no count of the whole store)."""
    suppressed = f", suppressed {f.suppressed}" if f.suppressed else ""
    return (f"summary: read {f.read}, stored {f.stored}, acknowledged {f.acknowledged}, "
            f"at-most-once sent {f.at_most_once_sent}, rejected input {by_reason(f.rejected)}, "
            f"dropped readings {by_reason(f.dropped)}{suppressed}; backlog up to {backlog}; "
            f"broker {broker}")
