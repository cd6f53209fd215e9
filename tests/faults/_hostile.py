"""Hostile records: hand-picked cases and Hypothesis strategies, each with the
``flagman-error`` it must earn (a regular expression: the field it names first, then
the gist of the complaint).

Hypothesis is used as a generator here: the records are drawn up front (derandomized,
so a run is reproducible) and then sent to the live worker in one stream.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.faults._support import MiB

Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Hostile:
    """One record that must be dead-lettered with an error matching ``error``."""

    label: str
    value: bytes | None
    error: str
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def record(self) -> tuple[bytes | None, bytes | None, Headers]:
        return self.key, self.value, list(self.headers)


def _j(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sig(params: Any = None, **extra: Any) -> bytes:
    return _j({"name": "hostile", "params": {} if params is None else params, **extra})


CE = {"specversion": "1.0", "type": "hostile", "id": "ce-1", "source": "fuzz"}
BIN = (("ce_specversion", b"1.0"), ("ce_type", b"hostile"), ("ce_id", b"b-1"), ("ce_source", b"fuzz"))


def _bin(drop: str = "", **replace: bytes | None) -> tuple[tuple[str, bytes | None], ...]:
    out = [(k, replace.pop(k, v)) for k, v in BIN if k != drop]
    return tuple(out) + tuple(replace.items())


def _padded(size: int, name: str = "hostile", k: str | None = None) -> bytes:
    """A native signal whose value is exactly ``size`` bytes (padding in the payload)."""
    params = b"{}" if k is None else b'{"k":"' + k.encode() + b'"}'
    head = b'{"name":"' + name.encode() + b'","params":' + params + b',"payload":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def _deep(levels: int, open_: str = "[", close: str = "]") -> bytes:
    return b'{"name":"hostile","params":{},"payload":' + (open_ * levels + close * levels).encode() + b"}"


def _deep_objects(levels: int) -> bytes:
    return b'{"name":"hostile","params":{},"payload":' + b'{"a":' * levels + b"1" + b"}" * levels + b"}"


HAND_PICKED: list[Hostile] = [
    # not UTF-8, not JSON, not an object
    Hostile("invalid utf-8", b'{"name":"hostile","params":{}}\xff', r"^value: not valid UTF-8 \(byte 30\)$"),
    Hostile("utf-8 encoded surrogate", b'{"name":"h\xed\xa0\x80","params":{}}', r"^value: not valid UTF-8"),
    Hostile("overlong utf-8", b'{"name":"\xc0\xaf","params":{}}', r"^value: not valid UTF-8"),
    Hostile("latin-1 text", "{\"name\":\"café\",\"params\":{}}".encode("latin-1"), r"^value: not valid UTF-8"),
    Hostile("not json", b"{not json", r"^value: not JSON"),
    Hostile("truncated json", _sig({"dt": "2026-11-25"})[:-3], r"^value: not JSON"),
    Hostile("trailing garbage", _sig() + b" x", r"^value: not JSON: Extra data"),
    Hostile("byte order mark", b"\xef\xbb\xbf" + _sig(), r"^value: not JSON.*byte order mark"),
    Hostile("empty value", b"", r"^value: empty record"),
    Hostile("null value", None, r"^value: empty record \(null value\)", key=b"tombstone"),
    Hostile("json array", b"[1,2,3]", r"^value: must be a JSON object, got array$"),
    Hostile("json string", b'"table_ready"', r"^value: must be a JSON object, got string$"),
    Hostile("json number", b"42", r"^value: must be a JSON object, got integer$"),
    Hostile("json null", b"null", r"^value: must be a JSON object, got null$"),
    Hostile("json true", b"true", r"^value: must be a JSON object, got boolean$"),
    # wrong types and nulls
    Hostile("name is a number", _j({"name": 42, "params": {}}), r"^name: must be a string, got integer$"),
    Hostile("name is an object", _j({"name": {"a": 1}, "params": {}}), r"^name: must be a string, got object$"),
    Hostile("name missing", _j({"params": {}}), r"^name: required$"),
    Hostile("name null", _j({"name": None, "params": {}}), r"^name: required, got null$"),
    Hostile("name empty", _j({"name": "", "params": {}}), r"^name: must match"),
    Hostile("name with space", _j({"name": "table ready", "params": {}}), r"^name: must match"),
    Hostile("name 201 chars", _j({"name": "n" * 201, "params": {}}), r"^name: must match"),
    Hostile("params missing", _j({"name": "hostile"}), r"^params: required$"),
    Hostile("params null", _j({"name": "hostile", "params": None}), r"^params: required, got null$"),
    Hostile("params a list", _j({"name": "hostile", "params": [1, 2]}), r"^params: must be an object, got array$"),
    Hostile("params a string", _j({"name": "hostile", "params": "dt=1"}), r"^params: must be an object, got string$"),
    Hostile("param null", _sig({"dt": None}), r"^params\.dt: must be a string, integer, finite float or boolean, got null$"),
    Hostile("id a number", _sig(id=7), r"^id: must be a string, got integer$"),
    Hostile("id empty", _sig(id=""), r"^id: must not be empty$"),
    Hostile("id 257 chars", _sig(id="i" * 257), r"^id: longer than 256 characters \(257\)$"),
    Hostile("source a list", _sig(source=["a"]), r"^source: must be a string, got array$"),
    Hostile("time a number", _sig(time=1764054131), r"^time: "),
    Hostile("time not rfc 3339", _sig(time="25/11/2026 06:02"), r"^time: "),
    Hostile("time without offset", _sig(time="2026-11-25T06:02:11"), r"^time: "),
    Hostile("time impossible date", _sig(time="2026-02-30T06:02:11Z"), r"^time: "),
    # nested params, too many params, bad keys, long strings
    Hostile("nested param object", _sig({"a": {"b": 1}}), r"^params\.a: .*got object$"),
    Hostile("nested param list", _sig({"a": [1, 2]}), r"^params\.a: .*got array$"),
    Hostile("65 params", _sig({f"k{i}": i for i in range(65)}), r"^params: at most 64 keys, got 65$"),
    Hostile("param key with space", _sig({"a b": 1}), r"^params: key 'a b' must match"),
    Hostile("param key starting with digit", _sig({"1a": 1}), r"^params: key '1a' must match"),
    Hostile("param key 65 chars", _sig({"k" * 65: 1}), r"^params: key 'k+'(\.\.\.)? must match"),
    Hostile("param key 10 KB", _sig({"k" * 10240: 1}), r"^params: key 'k{80}'\.\.\. must match"),
    Hostile("param string 1025 chars", _sig({"s": "x" * 1025}),
            r"^params\.s: string longer than 1024 characters \(1025\)$"),
    Hostile("param lone surrogate", b'{"name":"hostile","params":{"s":"\\ud800"}}',
            r"^params\.s: invalid Unicode \(lone surrogate U\+D800\)$"),
    # sizes
    Hostile("value 1 MiB + 1 byte", _padded(MiB + 1), r"^value: 1048577 bytes is over the limit of 1048576 bytes"),
    Hostile("value 3 MiB", b'{"name":"hostile","params":{},"payload":"' + b"x" * (3 * MiB) + b'"}',
            r"^value: \d+ bytes is over the limit of 1048576 bytes"),
    # numbers
    Hostile("NaN", b'{"name":"hostile","params":{"x":NaN}}', r"^value: NaN is not a valid JSON number$"),
    Hostile("Infinity", b'{"name":"hostile","params":{"x":Infinity}}', r"^value: Infinity is not a valid JSON number$"),
    Hostile("-Infinity", b'{"name":"hostile","params":{"x":-Infinity}}', r"^value: -Infinity is not a valid JSON number$"),
    Hostile("1e999", b'{"name":"hostile","params":{"x":1e999}}', r"^value: number out of range: '1e999'$"),
    Hostile("NaN in payload", b'{"name":"hostile","params":{},"payload":[NaN]}', r"^value: NaN is not a valid JSON number$"),
    Hostile("int64 max + 1", b'{"name":"hostile","params":{"x":9223372036854775808}}',
            r"^params\.x: integer outside the signed 64-bit range$"),
    Hostile("int64 min - 1", b'{"name":"hostile","params":{"x":-9223372036854775809}}',
            r"^params\.x: integer outside the signed 64-bit range$"),
    Hostile("10000-digit integer", b'{"name":"hostile","params":{},"payload":' + b"9" * 10000 + b"}",
            r"^value: number too long"),
    # nesting
    Hostile("10k nested arrays", _deep(10_000), r"^value: JSON nested deeper than 128 levels$"),
    Hostile("10k nested objects", _deep_objects(10_000), r"^value: JSON nested deeper than 128 levels$"),
    Hostile("129 nested arrays", _deep(128), r"^value: JSON nested deeper than 128 levels$"),
    Hostile("10k unclosed brackets", b'{"name":"hostile","params":{},"payload":' + b"[" * 10_000,
            r"^value: (not JSON|JSON nested deeper)"),
    # duplicate keys
    Hostile("duplicate name", b'{"name":"hostile","name":"other","params":{}}', r"^value: duplicate key 'name'$"),
    Hostile("duplicate param", b'{"name":"hostile","params":{"dt":"a","dt":"b"}}', r"^value: duplicate key 'dt'$"),
    Hostile("duplicate key in payload", b'{"name":"hostile","params":{},"payload":{"a":1,"a":1}}',
            r"^value: duplicate key 'a'$"),
    # CloudEvents, structured
    Hostile("ce without id", _j({k: v for k, v in CE.items() if k != "id"}), r"^id: required$"),
    Hostile("ce without source", _j({k: v for k, v in CE.items() if k != "source"}), r"^source: required$"),
    Hostile("ce without type", _j({k: v for k, v in CE.items() if k != "type"}), r"^type: required$"),
    Hostile("ce null id", _j({**CE, "id": None}), r"^id: required, got null$"),
    Hostile("ce specversion 0.3", _j({**CE, "specversion": "0.3"}), r"^specversion: only '1.0' is supported, got '0.3'$"),
    Hostile("ce specversion number", _j({**CE, "specversion": 1.0}), r"^specversion: only '1.0' is supported, got number$"),
    Hostile("ce data_base64", _j({**CE, "data_base64": "AAAA"}), r"^data_base64: "),
    Hostile("ce by content type, no type", _j({"id": "x", "source": "s"}), r"^specversion: required$",
            headers=(("content-type", b"application/cloudevents+json"),)),
    Hostile("ce data 65 scalars", _j({**CE, "data": {f"k{i}": i for i in range(65)}}),
            r"^data: at most 64 string, number or boolean members, got 65$"),
    # CloudEvents, binary mode
    Hostile("binary without ce_id", _sig(), r"^header ce_id: required$", headers=_bin("ce_id")),
    Hostile("binary without ce_source", _sig(), r"^header ce_source: required$", headers=_bin("ce_source")),
    Hostile("binary without ce_type", _sig(), r"^header ce_type: required$", headers=_bin("ce_type")),
    Hostile("binary ce_type latin-1", _sig(), r"^header ce_type: not valid UTF-8 \(byte 3\)$",
            headers=_bin(ce_type="caf\xe9".encode("latin-1"))),
    Hostile("binary ce_id invalid utf-8", _sig(), r"^header ce_id: not valid UTF-8 \(byte 0\)$",
            headers=_bin(ce_id=b"\xff\xfe")),
    Hostile("binary ce_source null", _sig(), r"^header ce_source: null value$", headers=_bin(ce_source=None)),
    Hostile("binary repeated ce_id", _sig(), r"^header ce_id: repeated$", headers=_bin() + (("ce_id", b"b-2"),)),
    Hostile("binary ce_specversion 0.3", _sig(), r"^header ce_specversion: only '1.0' is supported",
            headers=_bin(ce_specversion=b"0.3")),
    Hostile("binary ce_time garbage", _sig(), r"^header ce_time: ", headers=_bin(ce_time=b"yesterday")),
    Hostile("binary json data not json", b"{oops", r"not JSON",
            headers=_bin() + (("content-type", b"application/json"),)),
    Hostile("binary text data invalid utf-8", b"\xff\xfe", r"^value: not valid UTF-8",
            headers=_bin() + (("content-type", b"text/plain"),)),
    Hostile("binary data 10k nested", b"[" * 10_000 + b"]" * 10_000, r"nested deeper than 128 levels",
            headers=_bin()),
]

# Valid edge cases next to the limits: must be accepted, not dead-lettered.
EDGES: list[tuple[str, bytes]] = [
    ("64 params", _j({"name": "ok", "params": {"k": "edge-64", **{f"p{i}": i for i in range(63)}}})),
    ("string of 1024 chars", _j({"name": "ok", "params": {"k": "edge-1024", "s": "x" * 1024}})),
    ("int64 max", _j({"name": "ok", "params": {"k": "edge-int", "x": 2**63 - 1}})),
    ("128 nested levels", b'{"name":"ok","params":{"k":"edge-128"},"payload":' + b"[" * 127 + b"]" * 127 + b"}"),
]


def exactly_one_mib() -> bytes:
    """A valid ``ok`` signal whose value is exactly 1 MiB (the limit is inclusive)."""
    return _padded(MiB, "ok", "edge-1mib")


# -- Hypothesis ------------------------------------------------------------------------

KEYS = st.from_regex(re.compile(r"[a-z_][a-z0-9_]{0,12}"), fullmatch=True)
SCALARS = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False))
PARAMS = st.dictionaries(KEYS, SCALARS, max_size=8)
NON_STRING = st.one_of(st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(KEYS, st.integers(), max_size=3))


def _kind(v: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}[type(v)]


@st.composite
def broken_signals(draw: st.DrawFn) -> Hostile:
    """A valid native signal with exactly one rule broken, and the error that names it."""
    params = draw(PARAMS)
    how = draw(st.sampled_from([
        "nested param", "null param", "name type", "name chars", "too many params",
        "bad utf-8", "truncated", "nan", "big int", "duplicate key", "deep", "not object",
    ]))
    base = {"name": "hostile", "params": params}
    if how == "nested param":
        key = draw(KEYS)
        bad = draw(st.one_of(st.lists(st.integers(), max_size=3),
                             st.dictionaries(KEYS, st.integers(), max_size=3)))
        return Hostile(how, _j({**base, "params": {**params, key: bad}}),
                       rf"^params\.{re.escape(key)}: .*got {_kind(bad)}$")
    if how == "null param":
        key = draw(KEYS)
        return Hostile(how, _j({**base, "params": {**params, key: None}}), rf"^params\.{re.escape(key)}: .*got null$")
    if how == "name type":
        bad = draw(NON_STRING.filter(lambda v: v is not None))
        return Hostile(how, _j({**base, "name": bad}), rf"^name: must be a string, got {_kind(bad)}$")
    if how == "name chars":
        name = draw(st.text(min_size=1, max_size=30).filter(
            lambda s: re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", s) is None))
        return Hostile(how, _j({**base, "name": name}), r"^name: must match")
    if how == "too many params":
        n = draw(st.integers(65, 300))
        return Hostile(how, _j({**base, "params": {f"k{i}": i for i in range(n)}}), rf"^params: at most 64 keys, got {n}$")
    if how == "bad utf-8":
        raw = _j(base)
        at = draw(st.integers(1, len(raw) - 1))
        junk = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"]))
        return Hostile(how, raw[:at] + junk + raw[at:], rf"^value: not valid UTF-8 \(byte {at}\)$")
    if how == "truncated":
        raw = _j(base)
        return Hostile(how, raw[: draw(st.integers(1, len(raw) - 1))], r"^value: not JSON")
    if how == "nan":
        lit = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return Hostile(how, _j(base)[:-1] + b',"payload":{"x":' + lit.encode() + b"}}",
                       rf"^value: {re.escape(lit)} is not a valid JSON number$")
    if how == "big int":
        key = draw(KEYS)
        n = draw(st.one_of(st.integers(min_value=2**63, max_value=10**40),
                           st.integers(min_value=-(10**40), max_value=-(2**63) - 1)))
        return Hostile(how, _j({**base, "params": {**params, key: n}}),
                       rf"^params\.{re.escape(key)}: integer outside the signed 64-bit range$")
    if how == "duplicate key":
        return Hostile(how, b'{"name":"hostile","params":' + _j(params) + b',"name":"hostile"}',
                       r"^value: duplicate key 'name'$")
    if how == "deep":
        n = draw(st.integers(129, 20_000))
        return Hostile(how, _deep(n - 1), r"^value: JSON nested deeper than 128 levels$")
    bad = draw(st.one_of(st.lists(SCALARS, max_size=4), SCALARS))
    return Hostile(how, _j(bad), rf"^value: must be a JSON object, got {_kind(bad)}$")


@st.composite
def arbitrary_records(draw: st.DrawFn) -> Hostile:
    """Anything at all: random bytes, random JSON, random headers. Its fate is not known
    in advance; it must be dead-lettered with a one-line error naming a field, or taken."""
    value = draw(st.one_of(
        st.binary(max_size=200),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=20).map(_j),
    ))
    headers = draw(st.lists(st.tuples(st.sampled_from(["ce_specversion", "ce_type", "ce_id", "ce_source",
                                                       "ce_time", "content-type", "x-other"]),
                                      st.one_of(st.none(), st.binary(max_size=12))), max_size=4))
    return Hostile("arbitrary", value, r".", key=draw(st.one_of(st.none(), st.binary(max_size=20))),
                   headers=tuple(headers))


def draw_examples(strategy: st.SearchStrategy[Hostile], n: int) -> list[Hostile]:
    """``n`` examples of ``strategy``, reproducibly (derandomized), without shrinking."""
    out: list[Hostile] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(h: Hostile) -> None:
        out.append(h)

    collect()
    return out
