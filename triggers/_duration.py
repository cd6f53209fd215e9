"""Durations as trigger definitions write them (``lookback: 7d``), in whole seconds."""

from __future__ import annotations

import re

from ._errors import DurationError

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_S = 3650 * 86400
"""Ten years: longer than any sensible look-back, and far inside JSON's safe integers."""

_PART = re.compile(r"([0-9]{1,12})([smhdw])")
_TEXT = re.compile(r"(?:[0-9]{1,12}[smhdw])+|[0-9]{1,12}")


def parse_duration(value: str | int) -> int:
    """Return ``value`` in seconds.

    Accepts a non-negative integer (seconds), its decimal text, or one or more
    ``<number><unit>`` parts with units ``s m h d w`` (``45s``, ``12h``, ``7d``,
    ``1h30m``). ``0`` is a valid duration. Raises ``DurationError`` otherwise, and for
    anything over ten years.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DurationError(
            f"expected a duration like 7d, 12h, 30m, 45s or seconds, got {_kind(value)}"
        )
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip()
        if len(text) > 64 or not _TEXT.fullmatch(text):
            raise DurationError(
                f"invalid duration {_show(value)}: expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"
            )
        if text.isdigit():
            seconds = int(text)
        else:
            seconds = sum(int(n) * UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if seconds < 0:
        raise DurationError(f"duration must not be negative, got {seconds}")
    if seconds > MAX_DURATION_S:
        raise DurationError(
            f"duration too long: {seconds}s exceeds the {MAX_DURATION_S}s (3650d) limit"
        )
    return seconds


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
