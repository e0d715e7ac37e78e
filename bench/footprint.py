"""Figure 4: footprint, the gateway's memory idle and under load, and its CPU per reading.

    python -m bench.footprint [--settle 10] [--rate 2000] [--seconds 20]

One gateway runs 20 simulated streams (5 simulator devices x temperature,
humidity, counter and alarm, one reading a second each, the three delivery
classes mixed) and one serial pty stream, idle at first. Idle: after SETTLE
seconds, the gateway's RSS sampled five times a second apart (the max is
reported; so is the consumer's). Under load: the pty stream is fed RATE
readings/s for SECONDS; the gateway's max RSS over the run and its CPU
seconds (user + system, /proc) per 1,000 readings, from the first line
written to the last row committed by the consumer. Side by side, in the same
run: a bare interpreter and a bare `python -c` that imports paho.mqtt.client
and sqlite3 (what any Python MQTT client costs). Target: idle RSS 35 MB
(10^6 bytes) or less.

A second table lists the packages outside `gateway`/`devices` that the
gateway's modules import (`python -X importtime -c "import gateway.cli"`),
the ten largest by cumulative import time, each with the RSS it adds to a
bare interpreter when imported alone, and the RSS it adds on top of all the
other packages (what leaving it out would save).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    print_header,
    print_table,
    ratio,
    sample,
    wait_rows,
    workdir,
)
from bench.pipeline import pipeline
from gateway.core.delivery import DELIVERY_NAMES
from tests.support.procs import REPO

SIM_DEVICES = 5
SIM_STREAMS = (("temperature", "temp_c"), ("humidity", "humidity_pct"), ("counter", "counter"),
               ("alarm", "alarm"))
IDLE_SAMPLES = 5
TARGET_BYTES = 35_000_000
OWN_PACKAGES = ("gateway", "devices")
SITE_HOOKS = ("__editable__",)  # the editable install's finder, loaded at startup by every run
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def devices_yaml(link: Path, load_class: str) -> str:
    """Five simulator devices of four streams each (classes in rotation) and the pty device."""
    out = []
    for d in range(SIM_DEVICES):
        out.append(f"  - id: sim{d}\n    driver: simulator\n    interval: 1s\n    seed: {d}\n"
                   "    streams:\n")
        for s, (name, field) in enumerate(SIM_STREAMS):
            delivery = DELIVERY_NAMES[(d + s) % len(DELIVERY_NAMES)]
            out.append(f"      - {{name: {name}, field: {field}, delivery: {delivery}}}\n")
    out.append(f"  - id: dev\n    driver: serial\n    port: {link}\n    streams:\n"
               f"      - {{name: s, field: n, delivery: {load_class}}}\n")
    return "".join(out)


def idle_rss(pid: int, samples: int = IDLE_SAMPLES) -> int:
    """The max RSS (KiB) of `samples` samples one second apart."""
    values = []
    for n in range(samples):
        if n:
            time.sleep(1.0)
        values.append(sample(pid).rss_kib)
    return max(values)


def bare_rss(code: str, samples: int = 3) -> int:
    """Max RSS (KiB) of `python -c` running `code`, then waiting on its stdin."""
    proc = subprocess.Popen([sys.executable, "-c",
                             f"{code}\nimport sys\nprint('ready', flush=True)\nsys.stdin.read()"],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"python -c {code!r} did not start")
        return idle_rss(proc.pid, samples=samples)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


@dataclass(frozen=True)
class ImportCost:
    """One package the project's modules import, with its cumulative import time."""

    name: str
    importer: str
    cumulative_us: int


def external_imports(target: str = "gateway.cli") -> list[ImportCost]:
    """Modules outside our packages imported directly by one of ours, by cumulative time."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {target}"],
                         cwd=REPO, capture_output=True, text=True, check=True).stderr
    # importtime prints a module after everything it imported, one level deeper; so a
    # module's importer is the next line printed at a shallower level.
    entries: list[tuple[int, str, int]] = []
    for line in err.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            entries.append((len(m.group(3)) // 2, m.group(4), int(m.group(2))))
    found: dict[str, ImportCost] = {}
    for i, (level, name, cumulative) in enumerate(entries):
        if name.startswith(OWN_PACKAGES + SITE_HOOKS):
            continue
        importer = next((n for lv, n, _ in entries[i + 1:] if lv < level), "")
        if importer.startswith(OWN_PACKAGES) and name not in found:
            found[name] = ImportCost(name, importer, cumulative)
    return sorted(found.values(), key=lambda c: -c.cumulative_us)


def _imports(names: list[str]) -> str:
    return "\n".join(f"import {name}" for name in names) or "pass"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print two tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds the idle gateway runs before its RSS is sampled")
    parser.add_argument("--rate", type=float, default=2000.0, help="load: readings per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="load: seconds of feeding")
    parser.add_argument("--load-class", default="at-least-once", help="delivery of the pty stream")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if not 1 <= args.settle <= 600:
        parser.error("--settle from 1 to 600 seconds")
    if not 10 <= args.rate <= 20000 or not 2 <= args.seconds <= 600:
        parser.error("--rate from 10 to 20000; --seconds from 2 to 600")
    if args.load_class not in DELIVERY_NAMES:
        parser.error(f"--load-class takes {', '.join(DELIVERY_NAMES)}")
    count = int(args.rate * args.seconds)
    print_header("Footprint: gateway RSS idle and under load, CPU per reading",
                 {"idle streams": f"{SIM_DEVICES} simulator devices x {len(SIM_STREAMS)} streams "
                                  "at 1/s, classes mixed", "settle": f"{args.settle:g}s",
                  "load": f"1 pty stream {args.load_class} at {args.rate:g}/s for "
                          f"{args.seconds:g}s ({count} readings)",
                  "gateway config": "shipped defaults"})
    bare = bare_rss("pass")
    paho_sqlite = bare_rss("import paho.mqtt.client, sqlite3")
    with workdir(args.workdir) as where, \
            pipeline(where, {}, devices=devices_yaml(where / "ttyBENCH", args.load_class)) as run:
        run.gateway.wait_log(r"device=dev up", timeout=60)
        time.sleep(args.settle)  # the measurement window: the gateway idles meanwhile
        idle = idle_rss(run.gateway_pid)
        consumer_idle = idle_rss(run.consumer_pid, samples=1)
        before = sample(run.gateway_pid)
        rss = [before.rss_kib]
        feeding = threading.Thread(target=run.feeder.send, args=(count, args.rate))
        feeding.start()
        while feeding.is_alive():
            rss.append(sample(run.gateway_pid).rss_kib)
            feeding.join(0.5)
        got = wait_rows(run.db, count, timeout=300, stream="s",
                        settle=5.0 if args.load_class == "at-most-once" else None)
        after = sample(run.gateway_pid)
        rss.append(after.rss_kib)
        loaded = max(rss)
        cpu_per_1000 = (after.cpu_s - before.cpu_s) / max(got, 1) * 1000
    mib = 1024.0
    print_table(("measure", "gateway", "bare python", "vs bare python",
                 "python + paho + sqlite3", "vs paho + sqlite3", "target"), [
        ("idle RSS (20 streams), MiB", idle / mib, bare / mib, ratio(idle, bare),
         paho_sqlite / mib, ratio(idle, paho_sqlite),
         f"<= 35 MB: {'met' if idle * 1024 <= TARGET_BYTES else 'missed'} "
         f"({idle * 1024 / 1e6:.1f} MB)"),
        (f"max RSS under load ({args.rate:g}/s), MiB", loaded / mib, bare / mib,
         ratio(loaded, bare), paho_sqlite / mib, ratio(loaded, paho_sqlite), "-"),
        ("CPU s per 1,000 readings under load", cpu_per_1000, "-", "-", "-", "-", "-"),
        ("readings delivered under load", f"{got:,} of {count:,}", "-", "-", "-", "-", "-"),
        ("consumer idle RSS, MiB", consumer_idle / mib, bare / mib, ratio(consumer_idle, bare),
         paho_sqlite / mib, ratio(consumer_idle, paho_sqlite), "-"),
    ])
    costs = external_imports()
    names = [c.name for c in costs]
    every = bare_rss(_imports(names), samples=1)
    rows = []
    for cost in costs[:10]:
        alone = bare_rss(_imports([cost.name]), samples=1)
        without = bare_rss(_imports([n for n in names if n != cost.name]), samples=1)
        rows.append((cost.name, cost.importer, cost.cumulative_us / 1000, (alone - bare) / mib,
                     (every - without) / mib))
    print(f"All {len(names)} packages our modules import, imported together: "
          f"{every / mib:.1f} MiB ({(every - bare) / mib:.1f} MiB over a bare interpreter); "
          f"the gateway idle: {idle / mib:.1f} MiB.")
    print_table(("package (imported by our modules)", "first imported by",
                 "cumulative import ms", "RSS added alone, MiB",
                 "RSS added to all the others, MiB"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
