"""The package's one exception, and the helpers that keep its messages to one line."""

from __future__ import annotations

import re
from typing import Any

ECHO_LIMIT = 80
"""At most this many characters of user input are echoed in a reason."""

_REASON_LIMIT = 400
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class SignalError(Exception):
    """A Kafka record that cannot become a signal.

    ``reason`` is a single line that names the offending field first
    (``params.dt: must be a string, integer, finite float or boolean, got null``).
    It is meant to travel verbatim in the dead-letter header ``flagman-error``:
    it never contains a newline or a control character, and echoed input is cut
    to ``ECHO_LIMIT`` characters.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        reason = one_line(reason)
        super().__init__(reason)
        self.reason = reason


def one_line(text: str) -> str:
    """Escape control characters, line breaks and lone surrogates; cap the length."""
    text = _UNPRINTABLE.sub(_escape, text)
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 3] + "..."
    return text


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def show(text: str) -> str:
    """Quote user input for a reason: ``repr`` style, escaped, cut to ``ECHO_LIMIT``."""
    if len(text) <= ECHO_LIMIT:
        return repr(text)
    return repr(text[:ECHO_LIMIT]) + "..."


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages (``null``, ``array``...)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
