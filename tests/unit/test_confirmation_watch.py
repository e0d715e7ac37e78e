"""The confirmation watch: sweeps when a consumer appears, probes while none confirms."""

from __future__ import annotations

from gateway.core.confirmation_watch import ABSENT_AFTER, PROBE_ROWS, ConfirmationWatch


def watch() -> ConfirmationWatch:
    return ConfirmationWatch(started=1000.0, timeout=30.0)


def test_the_first_confirmation_of_a_run_starts_a_sweep() -> None:
    w = watch()
    assert not w.take_sweep()
    assert w.marked(1002.0) is False
    assert w.take_sweep() and not w.take_sweep()


def test_confirmations_in_a_steady_flow_start_no_sweep() -> None:
    w = watch()
    w.marked(1001.0)
    w.take_sweep()
    for t in range(1002, 1030):
        w.marked(float(t))
        assert not w.take_sweep()


def test_a_confirmation_after_a_quiet_spell_starts_a_sweep() -> None:
    w = watch()
    w.marked(1001.0)
    w.take_sweep()
    w.marked(1001.0 + 11.0)
    assert w.take_sweep()


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
    assert not w.absent and w.take_sweep()
    assert w.resend_limit(now + 301, 1000) == 1000


def test_not_absent_means_the_whole_batch() -> None:
    assert watch().resend_limit(1000.0, 1000) == 1000
