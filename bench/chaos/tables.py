"""Rendering of a mode's result as text: the table with a column per delivery class,
the faults injected, each criterion with its verdict, timings and notes.

This is what `python -m bench.chaos` prints per mode (bench/README.md,
"Results", shows a whole one); it formats and decides nothing.
"""

from __future__ import annotations

from collections import Counter

from bench.chaos.figures import CLASSES
from bench.chaos.ledger import DISK_REASONS
from bench.chaos.run import RunResult
from bench.chaos.schedule import FAULT_COUNTERS, KIND_LABELS, KINDS


def render(result: RunResult) -> str:
    """The tables of one mode."""
    opts = result.options
    figs = [result.figures[s] for s in CLASSES]
    lines = [
        f"== mode {opts.mode} (confirmation: {opts.mode}), broker persistence off, seed {opts.seed}: "
        f"{result.injected} faults in {result.seconds:.0f}s ==",
        "faults injected: " + ", ".join(f"{name} {result.faults.get(name, 0)}"
                                        for name in FAULT_COUNTERS)
        + f" (total {result.injected})",
    ]
    if set(opts.kinds) != set(KINDS):
        lines.append(f"only these kinds were injected: {', '.join(opts.kinds)} "
                     "(the pass criteria are claimed for runs of all seven)")

    def row(label: str, cells: list[str]) -> str:
        return f"  {label:<34}" + "".join(f"{c:>16}" for c in cells)

    def num(v: int | None) -> str:
        return "-" if v is None else str(v)

    lines.append(row("", [f.delivery for f in figs]))
    lines.append(row("sent by the device", [num(f.sent) for f in figs]))
    lines.append(row("stored by the gateway (1)", [num(f.stored) for f in figs]))
    lines.append(row("delivered to readings", [num(f.delivered) for f in figs]))
    lines.append(row("lost", [num(f.lost) for f in figs]))
    for kind in KINDS:
        if any(f.lost_by_kind.get(kind) for f in figs):
            lines.append(row(f"  in {KIND_LABELS[kind]} faults",
                             [num(f.lost_by_kind.get(kind, 0)) for f in figs]))
        if kind == "disk_full" and any(f.lost_after_free for f in figs):
            lines.append(row("    after the space was freed (3)",
                             [num(f.lost_after_free) for f in figs]))
    other = [sum(n for k, n in f.lost_by_kind.items() if k not in KINDS) for f in figs]
    if any(other):
        lines.append(row("  outside faults (warm-up, drain)", [num(n) for n in other]))
    lines.append(row("duplicates on the wire (tap) (2)", [num(f.wire_duplicates) for f in figs]))
    lines.append(row("duplicates dropped by consumer", [num(f.duplicates_dropped) for f in figs]))
    lines.append(row("duplicates in readings", [num(f.duplicates_in_readings) for f in figs]))
    reasons = sorted({r for f in figs for r in f.drops})
    if not reasons:
        lines.append(row("gateway drops by reason", ["0" for _ in figs]))
    for reason in reasons:
        lines.append(row(f"gateway drops: {reason}", [num(f.drops.get(reason, 0)) for f in figs]))
    lines.append(row("consumer gaps", [num(f.gaps) for f in figs]))
    lines.append(row("seqs issued by the gateway", [num(f.seqs_issued) for f in figs]))
    lines.append("  (1) sent minus the readings the gateway counted as dropped at ingest; a loss "
                 f"in a disk-full fault is explained only when counted as {' or '.join(DISK_REASONS)}")
    lines.append("  (2) the tap does not listen while the broker restarts (it would stand in for "
                 "the consumer), so it can miss copies")
    resumes = [ep.resume_seconds for ep in result.episodes if ep.resume_seconds is not None]
    if resumes:
        lines.append("  (3) sent after the ballast was deleted, before the gateway stored again "
                     f"(it took {sum(resumes) / len(resumes):.1f}s on average, at most "
                     f"{max(resumes):.1f}s; the device sent a line every 0.2s meanwhile)")
    lines.append("criteria:")
    for f in figs:
        for c in f.checks:
            lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {f.delivery:<14} {c.label}: {c.detail}")
    if result.incidents:
        lines.append("incidents (each fails the run):")
        lines.extend(f"  - {i}" for i in result.incidents)
    timing: dict[str, float] = {}
    counts = Counter[str]()
    for ep in result.episodes:
        timing[ep.kind] = timing.get(ep.kind, 0.0) + ep.seconds
        counts[ep.kind] += 1
    stalls = [ep for ep in result.episodes if ep.variant.startswith("stall")]
    if stalls:
        gave_up = sum(1 for ep in stalls if "gave up" in ep.variant)
        longest = max(float(ep.variant.split()[1].rstrip("s")) for ep in stalls)
        lines.append(f"link stalls: {len(stalls)}, longest {longest:.1f}s; the gateway gave the "
                     f"stalled link up (keepalive) and reconnected in {gave_up} of them")
    lines.append("mean seconds per fault (inject + settle): " + ", ".join(
        f"{KIND_LABELS[k]} {timing[k] / counts[k]:.1f}" for k in KINDS if counts[k]))
    notes = [f"fault {ep.index} {ep.kind}: {n}" for ep in result.episodes for n in ep.notes
             if "logged the full disk" not in n]
    logged = sum(1 for ep in result.episodes for n in ep.notes if "logged the full disk" in n)
    disk_eps = result.faults.get("disk full", 0)
    lines.append(f"disk full faults the gateway noticed (logged): {logged} of {disk_eps}")
    if notes:
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in notes[:20])
        if len(notes) > 20:
            lines.append(f"  - ... {len(notes) - 20} more")
    lines.append(f"{'PASS' if result.gateway_exit == 0 else 'FAIL'}  the gateway stopped on "
                 f"SIGTERM at the end with exit code {result.gateway_exit} (0 expected); "
                 f"workdir {result.workdir}")
    lines.append(f"verdict ({opts.mode}): {'PASS' if result.passed else 'FAIL'}")
    return "\n".join(lines)
