"""Topic segments and templates, human sizes and durations, and retry backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.core.backoff import Backoff
from gateway.core.topics import TopicTemplate, segment_problem
from gateway.core.units import format_bytes, parse_duration, parse_size

# -- segment_problem -----------------------------------------------------------------------


@pytest.mark.parametrize("good", ["climate", "temp_c", "Greenhouse-01", "°C", "x" * 64, "a.b:c$"])
def test_segment_problem_accepts(good: str) -> None:
    assert segment_problem(good) is None


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("x" * 65, "longer than 64"),
        ("a/b", "'/'"),
        ("a+", "'+'"),
        ("#", "'#'"),
        ("a\x00b", "'\\x00'"),
        ("air temp", "white space"),
        ("tab\there", "white space"),
        ("line\nbreak", "white space"),
    ],
    ids=["empty", "too-long", "slash", "plus", "hash", "nul", "space", "tab", "newline"],
)
def test_segment_problem_rejects(bad: str, why: str) -> None:
    problem = segment_problem(bad)
    assert problem is not None
    assert why in problem


# -- TopicTemplate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "prefix"),
    [
        ("gw/{gateway}", "gw/gh-01"),
        ("{gateway}", "gh-01"),
        ("site/north/{gateway}/data", "site/north/gh-01/data"),
        ("fixed/prefix", "fixed/prefix"),
        ("{gateway}/{gateway}", "gh-01/gh-01"),
    ],
)
def test_compile_good_templates(template: str, prefix: str) -> None:
    compiled = TopicTemplate.compile(template, "gh-01")
    assert compiled.prefix == prefix
    assert compiled.topic("climate", "temperature") == f"{prefix}/climate/temperature"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("gw/{site}", "unknown placeholder {site}"),
        ("gw/{}", "unknown placeholder {}"),
        ("gw/{gateway", "unbalanced"),
        ("gw/gateway}", "unbalanced"),
        ("", "empty"),
        ("/gw/{gateway}", "starts or ends with '/'"),
        ("gw/{gateway}/", "starts or ends with '/'"),
        ("$SYS/{gateway}", "'$'"),
        ("gw//{gateway}", "it is empty"),
        ("gw/+/{gateway}", "'+'"),
        ("gw/#", "'#'"),
        ("gw/\x00/{gateway}", "'\\x00'"),
        ("gw/my site", "white space"),
        ("gw/" + "x" * 65, "longer than 64"),
    ],
)
def test_compile_bad_templates(template: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        TopicTemplate.compile(template, "gh-01")
    assert message in str(caught.value)


# -- parse_size / parse_duration / format_bytes ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4096, 4096),
        (0, 0),
        ("1000", 1000),
        ("1B", 1),
        ("64KB", 64_000),
        ("64 KiB", 65_536),
        ("256MiB", 256 * 1024**2),
        ("256mib", 256 * 1024**2),
        ("1.5KiB", 1536),
        ("2.01KB", 2010),  # exact decimals: float arithmetic gave 2009
        ("4.35MB", 4_350_000),
        ("2GB", 2 * 1000**3),
        ("1TiB", 1024**4),
        (" 10 MB ", 10_000_000),
        ("9" * 40 + "TiB", int("9" * 40) * 1024**4),  # big, but not a crash
    ],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "", "-5", -5, "10 XB", "1e3", "MiB", "5 Mi", True, None, 1.5, [1]])
def test_parse_size_rejects(bad: object) -> None:
    assert parse_size(bad) is None


@settings(max_examples=500)  # float arithmetic got about 1 in 200 of these wrong
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=99),
       st.sampled_from([("KB", 1000), ("MB", 1000**2), ("KiB", 1024), ("MiB", 1024**2)]))
@example(2, 1, ("KB", 1000))
@example(8, 3, ("KB", 1000))
@example(2, 1, ("KiB", 1024))
def test_parse_size_decimals_are_exact(whole: int, hundredths: int, unit: tuple[str, int]) -> None:
    name, factor = unit
    assert parse_size(f"{whole}.{hundredths:02d}{name}") == (whole * 100 + hundredths) * factor // 100


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (5, 5.0),
        (0.25, 0.25),
        (0, 0.0),
        ("200ms", 0.2),
        ("5s", 5.0),
        ("5", 5.0),
        ("2m", 120.0),
        ("1.5h", 5400.0),
        (" 30 s ", 30.0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    ["soon", "", "-1s", -1, "5d", "1m30s", "5 sec", True, None, float("nan"), float("inf"),
     10**400, "1" + "0" * 400 + "s", [5]],
    ids=["word", "empty", "negative-text", "negative", "days", "compound", "sec", "bool", "none",
         "nan", "inf", "huge-int", "huge-text", "list"],
)
def test_parse_duration_rejects(bad: object) -> None:
    assert parse_duration(bad) is None


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1.0 MiB"),  # not "1024.0 KiB"
        (256 * 1024**2, "256.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**4, "5120.0 GiB"),
    ],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


@given(st.integers(min_value=0, max_value=3), st.integers(min_value=-200, max_value=200))
def test_format_bytes_never_shows_1024_of_a_unit_below_gib(power: int, offset: int) -> None:
    count = max(0, 1024 ** (power + 1) + offset)  # near where one unit turns into the next
    number, unit = format_bytes(count).split()
    assert unit in ("B", "KiB", "MiB", "GiB")
    assert unit == "GiB" or float(number) < 1024


# -- Backoff --------------------------------------------------------------------------------


def test_backoff_grows_then_caps() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
    assert max(delays[:3]) <= 2.0
    assert all(15.0 <= delay <= 30.0 for delay in delays[6:])
    assert backoff.attempts == 12


@pytest.mark.parametrize("seed", range(5))
def test_backoff_stays_within_half_cap_and_cap_after_many_failures(seed: int) -> None:
    backoff = Backoff(base=0.2, cap=10.0, rng=random.Random(seed))
    for _ in range(1000):  # the exponent is clamped: no overflow however long it fails
        backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(5.0 <= delay <= 10.0 for delay in delays)
    assert max(delays) - min(delays) > 2.0  # jittered, not constant


def test_backoff_reset_starts_again_from_base() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(7))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.5 <= backoff.next_delay() <= 1.0
    assert 1.0 <= backoff.next_delay() <= 2.0


def test_backoff_is_reproducible_with_a_seed() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next_delay() for _ in range(8)] == [second.next_delay() for _ in range(8)]


def test_backoff_base_above_cap_is_capped() -> None:
    backoff = Backoff(base=50.0, cap=10.0, rng=random.Random(3))
    assert all(5.0 <= backoff.next_delay() <= 10.0 for _ in range(20))
