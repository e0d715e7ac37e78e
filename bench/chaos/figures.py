"""Accounting and pass criteria: what happened to every line, per delivery class, and
whether each guarantee held (bench/README.md, "Pass criteria").

`count_figures` counts a finished run from the databases and the episodes;
`criteria` judges one class in one mode. A line is "lost" when its reading
never reached `readings`; it is attributed to the fault during which the
device sent it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.chaos.ledger import DISK_REASONS, Ledger
from bench.chaos.schedule import KIND_LABELS, Episode
from tests.support.rig import DURABLE, Rig

CLASSES = {"amo": "at-most-once", "alo": "at-least-once", "eo": "exactly-once"}


@dataclass
class Check:
    """One pass criterion and whether it held."""

    label: str
    ok: bool
    detail: str


@dataclass
class ClassFigures:
    """The proof of one delivery class after a run."""

    stream: str
    delivery: str
    sent: int
    seqs_issued: int | None
    stored: int | None
    delivered: int
    lost: int
    lost_by_kind: Counter[str]
    lost_after_free: int
    wire_duplicates: int
    duplicates_dropped: int
    duplicates_in_readings: int
    drops: dict[str, int]
    gaps: int
    checks: list[Check] = field(default_factory=list)

    @property
    def disk_drops(self) -> int:
        """Readings the gateway counted as not stored for a full disk or store."""
        return sum(self.drops.get(r, 0) for r in DISK_REASONS)

    @property
    def ok(self) -> bool:
        """Every criterion held."""
        return all(c.ok for c in self.checks)


def count_figures(rig: Rig, ledger: Ledger, episodes: list[Episode],
                  mode: str) -> dict[str, ClassFigures]:
    """Count every class after a run in `mode`, its criteria evaluated, keyed by stream."""
    sent = rig.next_n - 1
    kind_of: dict[int, str] = {}
    after_free: set[int] = set()
    for ep in episodes:
        for n in range(ep.first_line, ep.last_line + 1):
            kind_of[n] = ep.kind
        if ep.freed_line is not None:
            after_free.update(range(ep.freed_line, ep.last_line + 1))
    figures: dict[str, ClassFigures] = {}
    for stream, delivery in CLASSES.items():
        values = rig.values(stream)
        delivered = set(values)
        lost = set(range(1, sent + 1)) - delivered
        dup_dropped, gaps = ledger.consumer_counters(stream)
        drops = ledger.drops(stream)
        durable = stream in DURABLE
        seqs = rig.gateway_stored(stream) if durable else None
        fig = ClassFigures(
            stream=stream, delivery=delivery, sent=sent, seqs_issued=seqs,
            stored=(sent - sum(drops.values())) if durable else None,
            delivered=len(delivered), lost=len(lost),
            lost_by_kind=Counter(kind_of.get(n, "?") for n in lost),
            lost_after_free=len(lost & after_free),
            wire_duplicates=rig.tap.duplicates(stream) if rig.tap is not None else -1,
            duplicates_dropped=dup_dropped,
            duplicates_in_readings=len(values) - len(delivered),
            drops=drops, gaps=gaps)
        fig.checks = criteria(fig, mode)
        figures[stream] = fig
    return figures


def broker_losses_allowed(delivery: str, mode: str) -> bool:
    """Whether a broker SIGKILL (persistence off) may lose readings of a class in a mode.

    With `confirmation: end-to-end` durable rows (at-least-once and exactly-once)
    stay on the gateway until the consumer confirms them; in broker mode they leave
    at PUBACK/PUBCOMP, so a broker that dies with them queued (and no persistence)
    loses them."""
    return mode != "end-to-end"


def criteria(f: ClassFigures, mode: str) -> list[Check]:
    """The pass criteria of one class in one mode (bench/README.md)."""
    checks = [Check("0 duplicates in readings", f.duplicates_in_readings == 0,
                    f"{f.duplicates_in_readings} duplicates")]
    if f.delivery == "at-most-once":
        explained = sum(f.drops.values()) + f.gaps
        checks.append(Check("every loss counted: lost == gateway drops + consumer gaps",
                            f.lost == explained,
                            f"lost {f.lost}, gateway drops {sum(f.drops.values())}, "
                            f"consumer gaps {f.gaps}"))
        return checks
    disk = f.lost_by_kind.get("disk_full", 0)
    allowed = {"disk_full"} | ({"broker_kill"} if broker_losses_allowed(f.delivery, mode) else set())
    elsewhere = sum(n for kind, n in f.lost_by_kind.items() if kind not in allowed)
    where = " or ".join(sorted(KIND_LABELS[k] for k in allowed))
    checks.append(Check(f"0 lost except in {where} faults", elsewhere == 0,
                        f"{elsewhere} lost elsewhere"
                        + (f" ({dict(f.lost_by_kind)})" if elsewhere else "")))
    checks.append(Check("full-disk losses == drops the gateway counted "
                        f"({'/'.join(DISK_REASONS)})", disk == f.disk_drops,
                        f"lost in disk-full faults {disk}, counted {f.disk_drops}"))
    checks.append(Check("every loss counted: lost == full-disk drops + consumer gaps",
                        f.lost == f.disk_drops + f.gaps,
                        f"lost {f.lost}, full-disk drops {f.disk_drops}, consumer gaps {f.gaps} "
                        f"(lost in broker SIGKILL faults {f.lost_by_kind.get('broker_kill', 0)})"))
    if f.seqs_issued is not None and f.stored is not None:
        checks.append(Check("one seq per stored reading: seqs issued == stored (1)",
                            f.seqs_issued == f.stored,
                            f"seqs issued {f.seqs_issued}, stored {f.stored}"))
    return checks
