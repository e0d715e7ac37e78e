"""The short chaos run: `bench.chaos` with 14 faults per confirmation mode.

Each run injects every one of the seven fault kinds twice (broker SIGKILL with
persistence off, gateway SIGKILL, consumer SIGKILL, the link stalled once and
cut once, the serial device unplugged, the store's tmpfs filled, the link
slowed to 4 KB/s), prints the
table of `python -m bench.chaos` (see it with `pytest -s`) and asserts the
same criteria the command's exit code reflects (bench/README.md):
- every class: 0 duplicates in `readings`;
- at-most-once: lost == gateway drops + consumer gaps (every loss counted);
- at-least-once and exactly-once: nothing lost except readings the gateway
  counted as not stored for a full disk (`disk_full`/`store_error`), and,
  where the mode allows it, readings lost with a broker SIGKILL, each one a
  consumer gap. With `confirmation: end-to-end` exactly-once loses nothing to
  a broker SIGKILL; at-least-once is not covered by confirmation in either mode.
The long run is the documented command `python -m bench.chaos --faults 120`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.chaos.run import MODES, Options, run_mode
from bench.chaos.tables import render
from tests.support.procs import REPO

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs for the store: needs root")


@pytest.mark.integration
@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_short_chaos_run_keeps_every_guarantee(mode: str, tmp_path: Path) -> None:
    result = run_mode(Options(mode=mode, seed=11, faults=14, settle_timeout=30.0,
                              max_incidents=1), tmp_path / mode)
    table = render(result)
    print("\n" + table)
    assert not result.incidents, table
    assert result.faults == Counter({
        "broker SIGKILL": 2, "gateway SIGKILL": 2, "consumer SIGKILL": 2, "link stall": 1,
        "link cut": 1, "serial unplug": 2, "disk full": 2, "slow link": 2}), table
    broken = [f"{f.delivery}: {c.label}: {c.detail}"
              for f in result.figures.values() for c in f.checks if not c.ok]
    assert not broken, table
    assert result.gateway_exit == 0, table
    assert result.passed, table
    amo, alo, eo = (result.figures[s] for s in ("amo", "alo", "eo"))
    # The faults bit: the consumer kills lose QoS 0 readings (the broker does not
    # queue them for an absent session), each one seen as a consumer gap.
    assert amo.lost > 0 and amo.lost == amo.gaps + sum(amo.drops.values()), table
    for durable in (alo, eo):
        assert durable.sent == amo.sent, table
        assert durable.delivered + durable.lost == durable.sent, table
    if mode == "end-to-end":
        assert eo.lost == eo.disk_drops, table


@pytest.mark.parametrize("args, message", [
    (["--faults", "0"], "--faults must be between 1 and 100000"),
    (["--mode", "sideways", "--faults", "3"], "invalid choice: 'sideways'"),
    ([], "give --faults N or --duration SECONDS"),
    (["--faults", "3", "--kinds", "broker_kill,meteor"], "--kinds takes distinct names"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.chaos", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
