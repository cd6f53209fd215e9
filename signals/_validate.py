"""The field rules of a signal: name, params, id, source.

Each check takes the decoded JSON value and the field's name as the record spells it
(``name`` in a native signal, ``type`` or ``header ce_type`` in a CloudEvent), so the
reason points at what the producer actually sent.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ._errors import SignalError, json_type, show
from ._json import member_path
from ._model import ParamValue

MAX_NAME_CHARS = 200
MAX_PARAMS = 64
"""Most keys a signal's params may have (inclusive)."""
MAX_PARAM_STRING_CHARS = 1024
MAX_ID_CHARS = 256
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

NAME_PATTERN = "[A-Za-z0-9_.:-]{1,200}"
KEY_PATTERN = "[A-Za-z_][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(NAME_PATTERN)
_KEY = re.compile(KEY_PATTERN)

# Names and param keys repeat across records; remembering the valid ones skips the
# regex. Bounded, never evicted: past the bound, new strings just take the regex.
_MEMO_LIMIT = 4096
_valid_names: set[str] = set()
_valid_keys: set[str] = set()


def check_name(value: Any, field: str) -> str:
    """A signal name: 1-200 characters of ``A-Za-z0-9_.:-``."""
    if type(value) is not str:
        raise SignalError(f"{field}: must be a string, got {json_type(value)}")
    if value in _valid_names:
        return value
    if _NAME.fullmatch(value) is None:
        raise SignalError(f"{field}: must match {NAME_PATTERN}, got {show(value)}")
    if len(_valid_names) < _MEMO_LIMIT:
        _valid_names.add(value)
    return value


def check_params(value: Any, field: str) -> dict[str, ParamValue]:
    """A native ``params`` object: flat, at most 64 keys, scalar values."""
    if type(value) is not dict:
        raise SignalError(f"{field}: must be an object, got {json_type(value)}")
    if len(value) > MAX_PARAMS:
        raise SignalError(f"{field}: at most {MAX_PARAMS} keys, got {len(value)}")
    for key, item in value.items():
        check_param(key, item, field)
    return value


def check_param(key: str, value: Any, parent: str) -> None:
    """One param: key pattern, and a string (<= 1024 chars), int64, finite float or bool."""
    if key not in _valid_keys:
        if _KEY.fullmatch(key) is None:
            raise SignalError(f"{parent}: key {show(key)} must match {KEY_PATTERN}")
        if len(_valid_keys) < _MEMO_LIMIT:
            _valid_keys.add(key)
    kind = type(value)
    if kind is str:
        if len(value) > MAX_PARAM_STRING_CHARS:
            raise SignalError(
                f"{member_path(parent, key)}: string longer than {MAX_PARAM_STRING_CHARS} "
                f"characters ({len(value)})"
            )
    elif kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise SignalError(
                f"{member_path(parent, key)}: integer outside the signed 64-bit range"
            )
    elif kind is float:
        if not math.isfinite(value):
            raise SignalError(f"{member_path(parent, key)}: number must be finite")
    elif kind is not bool:
        raise SignalError(
            f"{member_path(parent, key)}: must be a string, integer, finite float or boolean, "
            f"got {json_type(value)}"
        )


def data_params(data: Any, field: str) -> dict[str, ParamValue]:
    """Params of a CloudEvent: the string, number and boolean members of its ``data``.

    Null, array and object members stay in the payload only; a ``data`` that is not an
    object gives no params. The members taken are held to the params rules.
    """
    if type(data) is not dict:
        return {}
    params = {key: item for key, item in data.items() if type(item) in (str, int, float, bool)}
    if len(params) > MAX_PARAMS:
        raise SignalError(
            f"{field}: at most {MAX_PARAMS} string, number or boolean members, got {len(params)}"
        )
    for key, item in params.items():
        check_param(key, item, field)
    return params


def check_id(value: Any, field: str) -> str:
    """An explicit signal id: a non-empty string of at most 256 characters."""
    if type(value) is not str:
        raise SignalError(f"{field}: must be a string, got {json_type(value)}")
    if not value:
        raise SignalError(f"{field}: must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise SignalError(f"{field}: longer than {MAX_ID_CHARS} characters ({len(value)})")
    return value


def check_source(value: Any, field: str, *, required: bool = False) -> str:
    """A source: any string for native signals; non-empty for CloudEvents."""
    if type(value) is not str:
        raise SignalError(f"{field}: must be a string, got {json_type(value)}")
    if required and not value:
        raise SignalError(f"{field}: must not be empty")
    return value
