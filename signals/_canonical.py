"""Canonical JSON (RFC 8785, JCS) and the signal identity hash built on it.

``rfc8785`` is the reference; this module reimplements its serialiser for speed (the
identity hash is on the hot path) and delegates float formatting to it. One deliberate
difference: integers outside IEEE 754's exact range (|n| > 2**53 - 1), which
``rfc8785`` refuses, are written as their exact decimal digits, so two distinct
64-bit param values never share an identity. Within that range the output is byte for
byte what ``rfc8785.dumps`` gives (the tests check this).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from json.encoder import encode_basestring
from typing import Any

import rfc8785

from ._model import ParamValue


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as RFC 8785 canonical JSON, UTF-8 encoded.

    Accepts ``None``, ``bool``, ``int``, ``float``, ``str``, lists/tuples and mappings
    with string keys. Raises ``TypeError`` for anything else and ``ValueError`` for
    what JSON cannot carry (NaN, infinities, lone surrogates).
    """
    return _text(obj).encode("utf-8")


def identity_hash(name: str, params: Mapping[str, ParamValue]) -> str:
    """Lowercase SHA-256 hex of ``canonical_json([name, params])``.

    The identity of a signal sent without an ``id``: the same name and params, in any
    key order, give the same hash. JSON types matter (``7`` and ``"7"`` differ, so do
    ``true`` and ``1``); JSON numbers do not have an int/float distinction, so ``7``
    and ``7.0`` are the same.
    """
    if type(name) is str and type(params) is dict:  # the hot path, one dispatch less
        text = "[" + encode_basestring(name) + "," + _object(params) + "]"
    else:
        text = _text([name, params])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(obj: Any) -> str:
    kind = type(obj)
    if kind is str:
        return encode_basestring(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if kind is int:
        return str(obj)
    if kind is float:
        return _float(obj)
    if kind is dict:
        return _object(obj)
    if kind is list or kind is tuple:
        return "[" + ",".join([_text(item) for item in obj]) + "]"
    return _other(obj)


def _other(obj: Any) -> str:
    # Subclasses (str enums, IntEnum...) take the slow path, as in rfc8785.
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(int(obj))
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, str):
        return encode_basestring(str.__str__(obj))
    if isinstance(obj, Mapping):
        return _object(obj)
    if isinstance(obj, list | tuple):
        return "[" + ",".join([_text(item) for item in obj]) + "]"
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _float(number: float) -> str:
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return rfc8785.dumps(number).decode("ascii")


def _object(obj: Mapping[Any, Any]) -> str:
    # sorted() and join() raise TypeError for non-string keys.
    keys = sorted(obj)
    joined = "".join(keys)
    if not joined.isascii() and max(joined) > "\uffff":
        # RFC 8785 orders keys by UTF-16 code units; that differs from code point
        # order only when a key has a character outside the BMP.
        keys.sort(key=_utf16)
    return "{" + ",".join([encode_basestring(key) + ":" + _text(obj[key]) for key in keys]) + "}"


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")
