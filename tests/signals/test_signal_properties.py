"""Property tests: whatever arrives, the parser returns a valid Signal or a SignalError."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from signals import Signal, SignalError, identity_hash, parse_record

TS = 1764050531512
NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
KEY_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
KEY_REST = KEY_FIRST + "0123456789.-"
HEADER_KEYS = [
    "ce_specversion", "ce_type", "ce_id", "ce_source", "ce_time", "ce_subject",
    "content-type", "Content-Type", "trace",
]  # fmt: skip

headers_st = st.lists(
    st.tuples(
        st.sampled_from(HEADER_KEYS) | st.text(max_size=10),
        st.none()
        | st.binary(max_size=20)
        | st.sampled_from([b"1.0", b"application/json", b"application/cloudevents+json", b"t"]),
    ),
    max_size=6,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.text(NAME_CHARS, min_size=1, max_size=200)
param_keys = st.builds(str.__add__, st.sampled_from(KEY_FIRST), st.text(KEY_REST, max_size=63))
param_values = (
    st.text(max_size=1024)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
params_st = st.dictionaries(param_keys, param_values, max_size=64)


def parse_or_error(value: bytes | None, headers: Any = ()) -> Signal | SignalError:
    try:
        signal = parse_record(value, headers, TS)
    except SignalError as err:
        assert_one_line(err.reason)
        return err
    assert_valid(signal)
    return signal


def assert_one_line(reason: str) -> None:
    assert reason
    assert len(reason) <= 400
    assert not any(ch < " " or ch in "\x7f\u2028\u2029" for ch in reason), reason
    assert reason.encode("utf-8")  # no lone surrogates: it must fit in a Kafka header


def assert_valid(signal: Signal) -> None:
    assert 1 <= len(signal.name) <= 200
    assert len(signal.params) <= 64
    for value in signal.params.values():
        assert type(value) in (str, int, float, bool)
        if type(value) is float:
            assert math.isfinite(value)
    assert 1 <= len(signal.id) <= 256
    assert signal.time.endswith("Z")
    assert signal.explicit_id or signal.id == identity_hash(signal.name, signal.params)


@given(st.binary(max_size=300), headers_st)
@example(b"", [("ce_specversion", b"1.0")])
@example(b"[" * 5000, [])
@example(b'{"specversion":"1.0"}', [])
def test_arbitrary_bytes_give_a_signal_or_a_signal_error(value: bytes, headers: Any) -> None:
    parse_or_error(value, headers)


@given(json_values, headers_st)
def test_arbitrary_json_gives_a_signal_or_a_signal_error(obj: Any, headers: Any) -> None:
    parse_or_error(json.dumps(obj).encode(), headers)


@given(
    st.fixed_dictionaries(
        {"name": names | json_values, "params": params_st | json_values},
        optional={
            "id": st.text(max_size=300) | json_values,
            "source": st.text() | json_values,
            "time": st.text(max_size=40) | json_values,
            "payload": json_values,
            "specversion": st.just("1.0") | json_values,
            "type": names | json_values,
            "data": params_st | json_values,
        },
    )
)
def test_near_valid_records_give_a_signal_or_a_signal_error(obj: dict[str, Any]) -> None:
    parse_or_error(json.dumps(obj, ensure_ascii=False).encode())


@given(names, params_st, st.data())
def test_valid_native_signals_round_trip(name: str, params: dict[str, Any], data: Any) -> None:
    obj: dict[str, Any] = {"name": name, "params": params}
    if data.draw(st.booleans()):
        obj["id"] = data.draw(st.text(min_size=1, max_size=256))
    if data.draw(st.booleans()):
        obj["payload"] = data.draw(json_values.filter(_finite))
    ensure_ascii = data.draw(st.booleans())
    signal = parse_record(json.dumps(obj, ensure_ascii=ensure_ascii).encode(), [], TS)
    assert signal.name == name
    assert signal.params == params
    assert [type(v) for v in signal.params.values()] == [type(v) for v in params.values()]
    assert signal.id == obj.get("id", identity_hash(name, params))
    assert signal.payload == obj.get("payload")
    assert (signal.time, signal.time_ms) == ("2025-11-25T06:02:11.512Z", TS)
    assert_valid(signal)


@given(names, st.text(min_size=1, max_size=256), st.dictionaries(param_keys, param_values))
def test_valid_cloudevents_round_trip(name: str, id_: str, data: dict[str, Any]) -> None:
    struct = {"specversion": "1.0", "type": name, "id": id_, "source": "/s", "data": data}
    if len(data) > 64:
        return
    signal = parse_record(json.dumps(struct).encode(), [], TS)
    assert (signal.name, signal.id, signal.params, signal.payload) == (name, id_, data, data)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_type", name.encode()),
        ("ce_id", id_.encode("utf-8", "surrogatepass")),
        ("ce_source", b"/s"),
    ]
    binary = parse_or_error(json.dumps(data).encode(), headers)
    if isinstance(binary, Signal):  # a generated id may hold a lone surrogate
        assert (binary.name, binary.id, binary.params, binary.payload) == (name, id_, data, data)


@given(st.data())
def test_corrupted_valid_records_never_crash(data: Any) -> None:
    value = bytearray(
        b'{"name":"table_ready","params":{"table":"db.orders","dt":"2026-11-25","n":7},'
        b'"id":"r1","time":"2026-11-25T06:02:11.5+01:00","payload":{"rows":[1,2.5,null]}}'
    )
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        index = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
        value[index] = data.draw(st.integers(min_value=0, max_value=255))
    parse_or_error(bytes(value))


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    return True
