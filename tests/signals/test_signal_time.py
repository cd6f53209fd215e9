"""RFC 3339 times: what is accepted, how it is normalised, and record timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals import SignalError, format_time_ms, parse_record

TS = 1764050531512


def parse_time(text: str) -> tuple[str, int]:
    value = json.dumps({"name": "x", "params": {}, "time": text}).encode()
    signal = parse_record(value, [], TS)
    return signal.time, signal.time_ms


def reason(text: str) -> str:
    with pytest.raises(SignalError) as info:
        parse_time(text)
    return info.value.reason


@pytest.mark.parametrize(
    ("text", "normal", "ms"),
    [
        ("2026-11-25T06:02:11Z", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25t06:02:11z", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T06:02:11+00:00", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T06:02:11-00:00", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T08:02:11+02:00", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T01:02:11-05:00", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T11:32:11+05:30", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T06:02:11.000Z", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-11-25T06:02:11.5Z", "2026-11-25T06:02:11.500Z", 1795586531500),
        ("2026-11-25T06:02:11.512Z", "2026-11-25T06:02:11.512Z", 1795586531512),
        ("2026-11-25T06:02:11.512300Z", "2026-11-25T06:02:11.512300Z", 1795586531512),
        ("2026-11-25T06:02:11.5123Z", "2026-11-25T06:02:11.512300Z", 1795586531512),
        ("2026-11-25T06:02:11.123456789Z", "2026-11-25T06:02:11.123456Z", 1795586531123),
        ("2026-11-25T06:02:11.000000001Z", "2026-11-25T06:02:11Z", 1795586531000),
        ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00Z", 1767223800000),
        ("2024-02-29T23:59:59.999-23:59", "2024-03-01T23:58:59.999Z", 1709337539999),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z", -1),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", -62135596800000),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z", 253402300799999),
    ],
)
def test_valid_times(text: str, normal: str, ms: int) -> None:
    assert parse_time(text) == (normal, ms)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25 06:02",
        "2026-11-25 06:02:11Z",
        "2026-11-25T06:02:11",
        "2026-11-25T06:02Z",
        "2026-11-25",
        "2026-11-25T06:02:11.Z",
        "2026-11-25T06:02:11+0200",
        "2026-11-25T06:02:11+02",
        "26-11-25T06:02:11Z",
        "2026-11-25T06:02:11Z ",
        "2026-11-25T06:02:11Z\n",
        "+2026-11-25T06:02:11Z",
        "2026-W48-3T06:02:11Z",
        "２０２６-11-25T06:02:11Z",
        "",
    ],
)
def test_not_rfc3339(text: str) -> None:
    assert reason(text).startswith("time: not RFC 3339 with an offset: ")


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("2026-02-29T00:00:00Z", "time: invalid date: '2026-02-29T00:00:00Z'"),
        ("2026-13-01T00:00:00Z", "time: invalid date: "),
        ("2026-00-10T00:00:00Z", "time: invalid date: "),
        ("0000-01-01T00:00:00Z", "time: invalid date: "),
        ("2026-11-25T24:00:00Z", "time: invalid time of day: "),
        ("2026-11-25T23:60:00Z", "time: invalid time of day: "),
        ("2026-11-25T23:59:61Z", "time: invalid time of day: "),
        ("2026-12-31T23:59:60Z", "time: leap seconds are not supported: "),
        ("2026-11-25T06:02:11+24:00", "time: invalid UTC offset: "),
        ("2026-11-25T06:02:11+01:60", "time: invalid UTC offset: "),
        ("0001-01-01T00:00:00+00:01", "time: outside years 1-9999 in UTC: "),
        ("9999-12-31T23:59:59-00:01", "time: outside years 1-9999 in UTC: "),
    ],
)
def test_invalid_times(text: str, start: str) -> None:
    assert reason(text).startswith(start)


def test_long_garbage_is_echoed_truncated() -> None:
    message = reason("x" * 10_000)
    assert message == f"time: not RFC 3339 with an offset: {'x' * 80!r}..."


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1764050531512, "2025-11-25T06:02:11.512Z"),
        (1795586531000, "2026-11-25T06:02:11.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253402300799999, "9999-12-31T23:59:59.999Z"),
        (-62135596800000, "0001-01-01T00:00:00.000Z"),
    ],
)
def test_format_time_ms(ms: int, text: str) -> None:
    assert format_time_ms(ms) == text


@pytest.mark.parametrize("ms", [253402300800000, -62135596800001, 10**20, -(10**20)])
def test_format_time_ms_out_of_range(ms: int) -> None:
    with pytest.raises(ValueError):
        format_time_ms(ms)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=-62135596800000, max_value=253402300799999))
def test_format_time_ms_agrees_with_datetime(ms: int) -> None:
    expected = EPOCH + timedelta(milliseconds=ms)
    text = format_time_ms(ms)
    assert datetime.fromisoformat(text) == expected
    assert len(text) == 24
    # and it reads back as the same instant, in normal form
    normal = text.removesuffix(".000Z") + "Z" if text.endswith(".000Z") else text
    assert parse_time(text) == (normal, ms)


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(None)
    ),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_offsets_agree_with_datetime(local: datetime, offset_minutes: int) -> None:
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{local.isoformat(timespec='microseconds')}{sign}{hours:02d}:{minutes:02d}"
    aware = datetime.fromisoformat(text)
    normal, ms = parse_time(text)
    assert ms == (aware - EPOCH) // timedelta(milliseconds=1)
    assert datetime.fromisoformat(normal) == aware
    assert normal.endswith("Z")
