"""Durations (``lookback``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggers._duration import MAX_DURATION_S, parse_duration
from triggers._errors import DurationError, TriggerError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7d", 604800),
        ("12h", 43200),
        ("30m", 1800),
        ("45s", 45),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("1d12h", 129600),
        (" 3600 ", 3600),
        ("0", 0),
        ("0s", 0),
        (0, 0),
        (3600, 3600),
        ("3650d", MAX_DURATION_S),
    ],
)
def test_valid(value: str | int, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "invalid duration '': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        ("7", None),
        ("7y", "invalid duration '7y': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        ("1.5h", "invalid duration '1.5h': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        ("-5s", "invalid duration '-5s': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        ("7 d", "invalid duration '7 d': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        ("d", "invalid duration 'd': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        ("7D", "invalid duration '7D': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"),
        (
            "9" * 13,
            "invalid duration '9999999999999': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds",
        ),
        (-1, "duration must not be negative, got -1"),
        ("3651d", "duration too long: 315446400s exceeds the 315360000s (3650d) limit"),
        (10**12, "duration too long: 1000000000000s exceeds the 315360000s (3650d) limit"),
        (True, "expected a duration like 7d, 12h, 30m, 45s or seconds, got bool"),
        (1.5, "expected a duration like 7d, 12h, 30m, 45s or seconds, got float"),
        (None, "expected a duration like 7d, 12h, 30m, 45s or seconds, got null"),
    ],
)
def test_invalid(value: Any, message: str | None) -> None:
    if message is None:
        assert parse_duration(value) == 7
        return
    with pytest.raises(DurationError) as info:
        parse_duration(value)
    assert str(info.value) == message
    assert isinstance(info.value, TriggerError)


@given(st.integers(min_value=0, max_value=100_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_units_multiply(n: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    try:
        assert parse_duration(f"{n}{unit}") == n * factor
    except DurationError:
        assert n * factor > MAX_DURATION_S


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_duration_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except DurationError:
        return
    assert 0 <= seconds <= MAX_DURATION_S
