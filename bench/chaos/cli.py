"""The command line of `python -m bench.chaos`: its arguments, the modes run one after
the other, what is printed, and the exit code.

Exit codes: 0 every criterion held; 1 a guarantee was broken, or the run
itself went wrong (a process died on its own, the path did not settle in
time); 2 usage error (one line on stderr, from argparse); 3 the run could
not be set up (no mosquitto, not root for the tmpfs); 130 interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench.chaos.interrupts import Interrupted, raise_interrupted
from bench.chaos.run import MODES, Options, RunResult, run_mode
from bench.chaos.schedule import KINDS
from bench.chaos.tables import render
from bench.chaos.watch import HarnessError

EXIT_OK, EXIT_BROKEN, EXIT_USAGE, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, checked; argparse exits 2 with a one-line message on a bad one."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Inject faults into a real gateway -> broker -> consumer path and check "
                    "the delivery guarantees (run from the repository root, as root).")
    parser.add_argument("--faults", type=int, default=None,
                        help="number of faults per mode (spread evenly over the seven kinds)")
    parser.add_argument("--duration", type=float, default=None,
                        help="inject faults for this many seconds per mode (with --faults: "
                             "whichever ends first)")
    parser.add_argument("--mode", choices=("end-to-end", "broker", "both"), default="both",
                        help="gateway confirmation mode (default: both, one after the other)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the schedule (default 1)")
    parser.add_argument("--stall-max", type=float, default=13.0,
                        help="longest link stall in seconds (default 13; half the stalls last "
                             "85-100%% of it; the gateway gives a silent link up after 10-11 s)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated fault kinds to inject (default: all seven: "
                             f"{','.join(KINDS)}); the guarantees are only claimed for all seven")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress line per fault on stderr")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to put logs and databases (default: a new temp dir, "
                             "removed after a passing run)")
    args = parser.parse_args(argv)
    if args.faults is None and args.duration is None:
        parser.error("give --faults N or --duration SECONDS (or both)")
    if args.faults is not None and not 1 <= args.faults <= 100000:
        parser.error(f"--faults must be between 1 and 100000; found {args.faults}")
    if args.duration is not None and not 1 <= args.duration <= 7 * 86400:
        parser.error(f"--duration must be between 1 and 604800 seconds; found {args.duration}")
    if not 1.0 <= args.stall_max <= 120.0:
        parser.error(f"--stall-max must be between 1 and 120 seconds; found {args.stall_max}")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        parser.error(f"--kinds takes distinct names from {','.join(KINDS)}; found {args.kinds!r}")
    args.kinds = kinds
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} exists and is not empty")
    return args


def main(argv: list[str] | None = None) -> int:
    """The command; its exit code."""
    args = parse_args(argv)
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        print("error: mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return EXIT_SETUP
    modes = MODES if args.mode == "both" else (args.mode,)
    keep = args.workdir is not None
    root = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    previous = {sig: signal.signal(sig, raise_interrupted)
                for sig in (signal.SIGTERM, signal.SIGINT)}
    results: list[RunResult] = []

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    print(f"chaos: {args.faults if args.faults is not None else 'unbounded'} faults"
          f"{f' / {args.duration:.0f}s' if args.duration else ''} per mode, modes "
          f"{', '.join(modes)}, seed {args.seed}, workdir {root}", flush=True)
    try:
        for mode in modes:
            options = Options(mode=mode, seed=args.seed, faults=args.faults,
                              duration=args.duration, stall_max=args.stall_max,
                              kinds=args.kinds)
            try:
                result = run_mode(options, root / mode, progress=progress)
            except RuntimeError as exc:  # setup: mount, broker start
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_SETUP
            except (HarnessError, AssertionError) as exc:  # the path did not come up
                print(f"error: {mode}: the gateway or consumer did not start: {exc}\n"
                      f"chaos: FAIL; logs kept in {root}", file=sys.stderr)
                return EXIT_BROKEN
            results.append(result)
            print(render(result), flush=True)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"chaos: interrupted ({exc or 'SIGINT'}); every process stopped and the tmpfs "
              f"unmounted; logs kept in {root}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    passed = all(r.passed for r in results)
    verdicts = ", ".join(f"{r.options.mode} {'pass' if r.passed else 'FAIL'}" for r in results)
    print(f"chaos: {'PASS' if passed else 'FAIL'} ({verdicts}); "
          f"{sum(r.injected for r in results)} faults in {sum(r.seconds for r in results):.0f}s")
    if passed and not keep:
        shutil.rmtree(root, ignore_errors=True)
    elif not passed:
        print(f"chaos: logs and databases kept in {root}")
    return EXIT_OK if passed else EXIT_BROKEN
