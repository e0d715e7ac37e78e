"""The confirmation watch: sweeps when a consumer appears, probes while none confirms."""

from __future__ import annotations

from gateway.core.confirmation_watch import (
    ABSENT_AFTER,
    PROBE_ROWS,
    SWEEP_DELAY,
    ConfirmationWatch,
)


def watch() -> ConfirmationWatch:
    return ConfirmationWatch(started=1000.0, timeout=30.0)


def test_the_first_confirmation_of_a_run_arms_a_sweep_that_runs_once_later() -> None:
    w = watch()
    assert w.take_sweep(1001.0) is None
    assert w.marked(1002.0) is False
    assert w.take_sweep(1002.0 + SWEEP_DELAY - 0.1) is None, "confirmations on their way first"
    assert w.take_sweep(1002.0 + SWEEP_DELAY) == 1002.0
    assert w.take_sweep(1010.0) is None, "once"


def test_confirmations_in_a_steady_flow_start_no_sweep() -> None:
    w = watch()
    w.marked(1001.0)
    w.take_sweep(1001.0 + SWEEP_DELAY)
    for t in range(1005, 1030):
        w.marked(float(t))
        assert w.take_sweep(float(t) + SWEEP_DELAY) is None


def test_a_confirmation_after_a_quiet_spell_arms_another_sweep() -> None:
    w = watch()
    w.marked(1001.0)
    w.take_sweep(1001.0 + SWEEP_DELAY)
    w.marked(1001.0 + 11.0)
    assert w.take_sweep(1012.0 + SWEEP_DELAY) == 1012.0


def test_a_sweep_with_more_rows_goes_on_at_the_next_look() -> None:
    w = watch()
    w.marked(1001.0)
    cutoff = w.take_sweep(1001.0 + SWEEP_DELAY)
    assert cutoff is not None
    w.more_to_sweep(cutoff)
    assert w.take_sweep(1004.5) == cutoff
    assert w.take_sweep(1005.0) is None


def test_absent_only_when_silent_and_rows_wait_long_enough() -> None:
    w = watch()
    assert not w.scan(1000.0 + ABSENT_AFTER - 1, oldest_held_age=ABSENT_AFTER)
    assert not w.scan(1000.0 + ABSENT_AFTER, oldest_held_age=None), "nothing waits"
    assert not w.scan(1000.0 + ABSENT_AFTER, oldest_held_age=3.0), "rows are fresh"
    assert w.scan(1000.0 + ABSENT_AFTER, oldest_held_age=ABSENT_AFTER)
    assert w.absent
    assert not w.scan(1000.0 + ABSENT_AFTER + 5, oldest_held_age=500.0), "warned once"


def test_while_absent_resends_are_a_small_probe_with_growing_intervals() -> None:
    w = watch()
    now = 1000.0 + ABSENT_AFTER
    assert w.scan(now, oldest_held_age=ABSENT_AFTER)
    sent, probes, t = 0, 0, now
    while t < now + 86400:  # one simulated day, scanned every second
        n = w.resend_limit(t, 1000)
        assert n in (0, PROBE_ROWS)
        sent += n
        probes += n > 0
        t += 1.0
    # Intervals double from the 30 s timeout to the 10-minute cap, jittered down to half of it.
    assert probes <= 86400 // 300 + 10, probes
    assert sent == probes * PROBE_ROWS
    assert w.resend_limit(t, 1000) in (0, PROBE_ROWS)


def test_a_confirmation_ends_the_absence_and_restores_full_resends() -> None:
    w = watch()
    now = 1000.0 + ABSENT_AFTER
    w.scan(now, oldest_held_age=ABSENT_AFTER)
    assert w.marked(now + 300) is True
    assert not w.absent and w.take_sweep(now + 300 + SWEEP_DELAY) is not None
    assert w.resend_limit(now + 301, 1000) == 1000


def test_not_absent_means_the_whole_batch() -> None:
    assert watch().resend_limit(1000.0, 1000) == 1000
