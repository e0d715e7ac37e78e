"""The batcher's pure logic: grouping, max_readings, max_delay, splitting to fit."""

from __future__ import annotations

import pytest

from gateway.core.batch import Grouper, split_to_fit


def test_groups_are_kept_apart_and_in_order() -> None:
    g: Grouper[tuple[str, int], int] = Grouper(max_readings=3, max_delay=2.0)
    for i, key in enumerate([("a", 1), ("b", 1), ("a", 2), ("a", 1), ("a", 1), ("b", 1)]):
        g.add(key, i, now=10.0)
    assert len(g) == 6
    assert g.take(10.0, limit=10) == [(("a", 1), [0, 3, 4])]  # only the full one is due
    assert len(g) == 3
    assert g.take(12.0, limit=10) == [(("b", 1), [1, 5]), (("a", 2), [2])]
    assert len(g) == 0 and g.next_due() is None


def test_max_readings_cuts_a_group_into_full_batches() -> None:
    g: Grouper[str, int] = Grouper(max_readings=4, max_delay=5.0)
    for i in range(10):
        g.add("d", i, now=0.0)
    assert g.take(0.0, limit=10) == [("d", [0, 1, 2, 3]), ("d", [4, 5, 6, 7])]
    assert g.take(1.0, limit=10) == []  # two left, not yet due
    assert g.take(1.0, limit=10, flush=True) == [("d", [8, 9])]


def test_max_delay_counts_from_the_oldest_item() -> None:
    g: Grouper[str, int] = Grouper(max_readings=100, max_delay=2.0)
    g.add("d", 1, now=1.0)
    g.add("d", 2, now=2.5)
    g.add("e", 3, now=1.5)
    assert g.next_due() == 3.0
    assert g.take(2.99, limit=10) == []
    assert g.take(3.0, limit=10) == [("d", [1, 2])]
    assert g.next_due() == 3.5


def test_limit_bounds_the_batches_taken() -> None:
    g: Grouper[str, int] = Grouper(max_readings=2, max_delay=0.0)
    for i in range(7):
        g.add("d", i, now=0.0)
    assert g.take(0.0, limit=2) == [("d", [0, 1]), ("d", [2, 3])]
    assert len(g) == 3
    assert g.take(0.0, limit=5) == [("d", [4, 5]), ("d", [6])]


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        Grouper(max_readings=0, max_delay=1.0)
    with pytest.raises(ValueError):
        Grouper(max_readings=1, max_delay=-1.0)


def _encoder(limit: int) -> object:
    def encode(items: list[int]) -> bytes | None:
        payload = b"".join(b"x" * n for n in items)
        return payload if len(payload) <= limit else None
    return encode


def test_split_keeps_a_batch_that_fits_whole() -> None:
    parts, alone = split_to_fit([1, 2, 3], _encoder(6))  # type: ignore[arg-type]
    assert parts == [([1, 2, 3], b"xxxxxx")] and alone == []


def test_split_halves_until_every_part_fits_in_order() -> None:
    items = [3] * 8
    parts, alone = split_to_fit(items, _encoder(7))  # type: ignore[arg-type]
    assert [p for p, _ in parts] == [[3, 3]] * 4
    assert all(len(payload) <= 7 for _, payload in parts)
    assert alone == []


def test_split_gives_back_what_does_not_fit_alone() -> None:
    parts, alone = split_to_fit([1, 9, 1, 1], _encoder(4))  # type: ignore[arg-type]
    assert [p for p, _ in parts] == [[1], [1, 1]]
    assert alone == [9]
