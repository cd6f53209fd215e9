"""Strict JSON decoding of a record value: size, UTF-8, duplicates, depth, numbers.

The standard library's C scanner does the work; hooks add the strictness it lacks.
Everything that can go wrong surfaces as ``SignalError``: a value that is too deep
for the scanner (``RecursionError``) or has an integer literal beyond Python's
digit limit (``ValueError``) included.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from ._errors import SignalError, show

MAX_VALUE_BYTES = 1_048_576
"""Largest accepted record value, in bytes (inclusive)."""

MAX_JSON_DEPTH = 128
"""Deepest accepted nesting of arrays and objects (the top-level object is depth 1).

Not in the contract, but needed: without a limit a value the scanner can still read
(~1000 levels) would make a later ``json.dumps`` in the runtime raise
``RecursionError``. 128 is serde_json's default.
"""

_JSON_SPACE = " \t\n\r"
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Escapes of UTF-16 surrogates (\uD800-\uDFFF): the only way a lone surrogate,
# which UTF-8 cannot carry, gets into a decoded string. Pairs match too (cheap
# false positive: the walk then finds nothing).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise SignalError(f"value: duplicate key {show(key)}")
            seen.add(key)
    return obj


def _constant(literal: str) -> Any:
    raise SignalError(f"value: {literal} is not a valid JSON number")


def _float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise SignalError(f"value: number out of range: {show(literal)}")
    return number


# The decoder's scanner is called directly: JSONDecoder.decode adds two Python calls
# and a regex per record for what two string checks do here.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float
).scan_once  # type: ignore[attr-defined]  # undeclared in typeshed, present since 2.6


def decode_json(raw: bytes, root: str | None = None) -> Any:
    """Decode a record value (already size-checked) as strict UTF-8 JSON.

    ``root`` names the decoded value in messages about its insides; ``None``
    means the value is the signal itself, so its members are named bare
    (``params.dt``, ``payload.rows[3]``).
    """
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise SignalError(f"value: not valid UTF-8 (byte {exc.start})") from exc
    try:
        start = len(text) - len(text.lstrip(_JSON_SPACE)) if text[:1] in _JSON_SPACE else 0
        try:
            obj, end = _scan(text, start)
        except StopIteration as exc:
            if text[:1] == "\ufeff":
                raise SignalError("value: not JSON: starts with a byte order mark") from None
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        raise SignalError(
            f"value: not JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise SignalError(f"value: JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # an integer literal beyond sys.get_int_max_str_digits()
        raise SignalError(
            f"value: number too long: integer literals are limited to "
            f"{sys.get_int_max_str_digits()} digits"
        ) from exc
    # Cheap pre-checks keep the walk off the hot path: depth cannot exceed the
    # number of opening brackets, and lone surrogates need a \uD8xx-style escape.
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH or (
        "\\u" in text and _SURROGATE_ESCAPE.search(text)
    ):
        _walk(obj, root)
    return obj


def _walk(obj: Any, root: str | None) -> None:
    """Reject nesting beyond ``MAX_JSON_DEPTH`` and lone surrogates, iteratively."""
    stack: list[tuple[Any, int, str | None]] = [(obj, 0, root)]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
            continue
        if not isinstance(value, dict | list):
            continue
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise SignalError(f"value: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                child = member_path(path, key)
                _check_text(key, child)
                stack.append((item, depth, child))
        else:
            stack.extend((item, depth, f"{path or 'value'}[{i}]") for i, item in enumerate(value))


def _check_text(text: str, path: str | None) -> None:
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        raise SignalError(
            f"{path or 'value'}: invalid Unicode (lone surrogate U+{ord(found.group()):04X})"
        )


def member_path(parent: str | None, key: str) -> str:
    """``parent.key``, or ``parent[<quoted key>]`` for keys that are not identifiers."""
    if _SIMPLE_KEY.fullmatch(key):
        return key if parent is None else f"{parent}.{key}"
    return f"{parent or 'value'}[{show(key)}]"
