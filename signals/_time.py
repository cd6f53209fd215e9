"""RFC 3339 times: strict parsing, normalisation to UTC text, epoch milliseconds.

Normal form: ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z``. Sub-second digits beyond
microseconds are truncated; the fraction is left out when zero, written with three
digits when it is whole milliseconds and with six otherwise. So ``06:02:11.5+00:00``
becomes ``06:02:11.500Z`` and ``06:02:11.000Z`` becomes ``06:02:11Z``: equal instants
(to the microsecond) give equal text. ``format_time_ms`` (record timestamps) always
writes milliseconds. Only years 1-9999 (in UTC) are representable.

Arithmetic is done on epoch seconds with a memo of date text <-> day number, which is
several times faster than building ``datetime`` objects on the hot path.
"""

from __future__ import annotations

import re
from datetime import date

from ._errors import SignalError, json_type, show

# RFC 3339 section 5.6 date-time; "T" and "Z" may be lowercase (ABNF strings are
# case-insensitive). A space instead of "T" is not accepted.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TWO = [f"{i:02d}" for i in range(60)]
_THREE = [f"{i:03d}" for i in range(1000)]

# Bounded memos, never evicted (past the bound new dates are just computed).
_MEMO_LIMIT = 8192
_day_of_text: dict[str, int] = {}
_text_of_day: dict[int, str] = {}


def parse_time(value: object, field: str) -> tuple[str, int]:
    """Validate an RFC 3339 time with offset; return ``(utc_text, epoch_ms)``."""
    if type(value) is not str:
        raise SignalError(f"{field}: must be an RFC 3339 string, got {json_type(value)}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise SignalError(f"{field}: not RFC 3339 with an offset: {show(value)}")
    hour_s, minute_s, second_s, fraction, sign, off_h, off_m = match.groups()
    hour, minute, second = int(hour_s), int(minute_s), int(second_s)
    if hour > 23 or minute > 59 or second > 59:
        if second == 60 and hour <= 23 and minute <= 59:
            raise SignalError(f"{field}: leap seconds are not supported: {show(value)}")
        raise SignalError(f"{field}: invalid time of day: {show(value)}")
    day = _day_of_text.get(value[:10])
    if day is None:
        day = _parse_date(value, field)
    seconds = day * 86400 + hour * 3600 + minute * 60 + second
    if fraction is None and sign is None:
        if value[10] == "T" and value[19] == "Z":
            return value, seconds * 1000  # already in normal form
        return f"{value[:10]}T{value[11:19]}Z", seconds * 1000
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    if sign is not None:
        offset_h, offset_m = int(off_h), int(off_m)
        if offset_h > 23 or offset_m > 59:
            raise SignalError(f"{field}: invalid UTC offset: {show(value)}")
        offset = offset_h * 3600 + offset_m * 60
        seconds = seconds - offset if sign == "+" else seconds + offset
    try:
        text = _format(seconds, micro)
    except ValueError as exc:
        raise SignalError(f"{field}: outside years 1-9999 in UTC: {show(value)}") from exc
    return text, seconds * 1000 + micro // 1000


def _parse_date(value: str, field: str) -> int:
    try:
        day = date(int(value[:4]), int(value[5:7]), int(value[8:10])).toordinal()
    except ValueError as exc:
        raise SignalError(f"{field}: invalid date: {show(value)} ({exc})") from exc
    day -= _EPOCH_ORDINAL
    if len(_day_of_text) < _MEMO_LIMIT:
        _day_of_text[value[:10]] = day
    return day


def _date_text(day: int) -> str:
    text = _text_of_day.get(day)
    if text is None:
        try:
            text = date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"day {day} is outside years 1-9999") from exc
        if len(_text_of_day) < _MEMO_LIMIT:
            _text_of_day[day] = text
    return text


def _format(seconds: int, micro: int) -> str:
    day, second = divmod(seconds, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    text = f"{_date_text(day)}T{_TWO[hour]}:{_TWO[minute]}:{_TWO[second]}"
    if micro == 0:
        return text + "Z"
    if micro % 1000 == 0:
        return f"{text}.{_THREE[micro // 1000]}Z"
    return f"{text}.{micro:06d}Z"


def format_time_ms(ms: int) -> str:
    """Epoch milliseconds as UTC RFC 3339 text with milliseconds: ``2026-11-25T06:02:11.512Z``.

    Raises ``ValueError`` outside years 1-9999.
    """
    seconds, millis = divmod(ms, 1000)
    day, second = divmod(seconds, 86400)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{_date_text(day)}T{_TWO[hour]}:{_TWO[minute]}:{_TWO[second]}.{_THREE[millis]}Z"
