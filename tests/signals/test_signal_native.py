"""Native signals: the field rules of SPEC section 2, both sides of every boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signals import MAX_PARAMS, Signal, SignalError, identity_hash, parse_record

TS = 1764050531512  # 2025-11-25T06:02:11.512Z
TS_TEXT = "2025-11-25T06:02:11.512Z"


def parse(obj: Any, headers: list[tuple[str, bytes | None]] | None = None) -> Signal:
    return parse_record(json.dumps(obj).encode(), headers or [], TS)


def reason(obj: Any) -> str:
    with pytest.raises(SignalError) as info:
        parse(obj)
    return info.value.reason


def sig(**members: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "table_ready", "params": {"table": "db.orders"}}
    base.update(members)
    return {key: value for key, value in base.items() if value is not ...}


def test_the_spec_example() -> None:
    signal = parse(
        {
            "name": "table_ready",
            "params": {"table": "db.orders", "dt": "2026-11-25", "region": "us"},
            "id": "orders-2026-11-25-r1",
            "source": "etl.orders",
            "time": "2026-11-25T06:02:11Z",
            "payload": {"rows": 120331},
        }
    )
    assert signal == Signal(
        name="table_ready",
        params={"table": "db.orders", "dt": "2026-11-25", "region": "us"},
        id="orders-2026-11-25-r1",
        time="2026-11-25T06:02:11Z",
        time_ms=1795586531000,
        source="etl.orders",
        payload={"rows": 120331},
        explicit_id=True,
        encoding="native",
        extra={},
    )
    assert signal.identity == ("table_ready", "orders-2026-11-25-r1")


def test_only_name_and_params_are_required() -> None:
    signal = parse({"name": "x", "params": {}})
    assert signal.params == {}
    assert signal.source is None
    assert signal.payload is None
    assert signal.time == TS_TEXT
    assert signal.time_ms == TS
    assert signal.explicit_id is False
    assert signal.id == identity_hash("x", {})
    assert signal.extra == {}


@pytest.mark.parametrize("member", ["name", "params"])
def test_required_members(member: str) -> None:
    assert reason(sig(**{member: ...})) == f"{member}: required"
    assert reason(sig(**{member: None})) == f"{member}: required, got null"


# -- name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "x" * 200, "table_ready", "A-Z.a:z_0-9", "ns:orders.v2", "0", "-", "..."]
)
def test_valid_names(name: str) -> None:
    assert parse(sig(name=name)).name == name


@pytest.mark.parametrize(
    "name", ["", "x" * 201, "table ready", "tablé", "a/b", "a\nb", "a\n", "a@b", "\u0661"]
)
def test_invalid_names(name: str) -> None:
    assert reason(sig(name=name)).startswith("name: must match [A-Za-z0-9_.:-]{1,200}, got ")


@pytest.mark.parametrize(
    ("name", "kind"), [(7, "integer"), (True, "boolean"), ([], "array"), ({}, "object")]
)
def test_name_must_be_a_string(name: Any, kind: str) -> None:
    assert reason(sig(name=name)) == f"name: must be a string, got {kind}"


# -- params -------------------------------------------------------------------------


def test_param_value_types() -> None:
    params = {"s": "x", "i": -7, "f": 1.5, "t": True, "n": False, "z": 0, "e": ""}
    assert parse(sig(params=params)).params == params
    got = parse(sig(params=params)).params
    assert type(got["t"]) is bool
    assert type(got["i"]) is int
    assert type(got["f"]) is float


@pytest.mark.parametrize(
    ("value", "kind"), [(None, "null"), ([1], "array"), ({"a": 1}, "object"), ([], "array")]
)
def test_param_values_must_be_scalars(value: Any, kind: str) -> None:
    assert reason(sig(params={"dt": value})) == (
        f"params.dt: must be a string, integer, finite float or boolean, got {kind}"
    )


def test_param_string_length_is_inclusive() -> None:
    assert parse(sig(params={"s": "x" * 1024})).params["s"] == "x" * 1024
    assert reason(sig(params={"s": "x" * 1025})) == (
        "params.s: string longer than 1024 characters (1025)"
    )


def test_param_string_length_counts_characters_not_bytes() -> None:
    assert parse(sig(params={"s": "é" * 1024})).params["s"] == "é" * 1024


def test_params_count_is_inclusive() -> None:
    params = {f"k{i}": i for i in range(MAX_PARAMS)}
    assert parse(sig(params=params)).params == params
    params["one_more"] = 1
    assert reason(sig(params=params)) == "params: at most 64 keys, got 65"


@pytest.mark.parametrize("key", ["a", "_", "A_b.c-d", "x" + "y" * 63, "_0", "dt"])
def test_valid_param_keys(key: str) -> None:
    assert parse(sig(params={key: 1})).params == {key: 1}


@pytest.mark.parametrize("key", ["", "0a", "-a", ".a", "a b", "x" * 65, "ä", "a:b", "a\n"])
def test_invalid_param_keys(key: str) -> None:
    message = reason(sig(params={key: 1}))
    assert message.startswith("params: key ")
    assert message.endswith(" must match [A-Za-z_][A-Za-z0-9_.-]{0,63}")


def test_param_key_length_boundary() -> None:
    assert parse(sig(params={"k" * 64: 1})).params == {"k" * 64: 1}
    assert "must match" in reason(sig(params={"k" * 65: 1}))


def test_params_integers_fit_signed_64_bit() -> None:
    edge = {"lo": -(2**63), "hi": 2**63 - 1}
    assert parse(sig(params=edge)).params == edge
    assert reason(sig(params={"n": 2**63})) == "params.n: integer outside the signed 64-bit range"
    assert reason(sig(params={"n": -(2**63) - 1})) == (
        "params.n: integer outside the signed 64-bit range"
    )


@pytest.mark.parametrize("params", [[], "a=1", 1, True])
def test_params_must_be_an_object(params: Any) -> None:
    assert reason(sig(params=params)).startswith("params: must be an object, got ")


def test_floats_are_kept() -> None:
    assert parse(sig(params={"f": 1e300, "g": -0.5, "h": 2.0})).params == {
        "f": 1e300,
        "g": -0.5,
        "h": 2.0,
    }


# -- id -----------------------------------------------------------------------------


def test_id_length_is_inclusive() -> None:
    assert parse(sig(id="i" * 256)).id == "i" * 256
    assert reason(sig(id="i" * 257)) == "id: longer than 256 characters (257)"


def test_explicit_id() -> None:
    signal = parse(sig(id="run-1"))
    assert signal.id == "run-1"
    assert signal.explicit_id is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "id: must not be empty"),
        (7, "id: must be a string, got integer"),
        (True, "id: must be a string, got boolean"),
        ({"a": 1}, "id: must be a string, got object"),
    ],
)
def test_invalid_ids(value: Any, message: str) -> None:
    assert reason(sig(id=value)) == message


def test_null_id_is_absent() -> None:
    signal = parse(sig(id=None))
    assert signal.explicit_id is False
    assert signal.id == identity_hash("table_ready", {"table": "db.orders"})


# -- source, payload, extra ---------------------------------------------------------


def test_source() -> None:
    assert parse(sig(source="etl.orders")).source == "etl.orders"
    assert parse(sig(source=None)).source is None
    assert reason(sig(source=3)) == "source: must be a string, got integer"


@pytest.mark.parametrize(
    "payload", [None, 1, "x", [1, {"a": None}], {"rows": 1, "deep": {"a": [1.5, None]}}]
)
def test_payload_is_any_json(payload: Any) -> None:
    assert parse(sig(payload=payload)).payload == payload


def test_unknown_members_go_to_extra() -> None:
    signal = parse(sig(owner="team-a", labels={"a": 1}))
    assert signal.extra == {"owner": "team-a", "labels": {"a": 1}}


# -- time ---------------------------------------------------------------------------


def test_time_is_normalised_to_utc() -> None:
    signal = parse(sig(time="2026-11-25T08:02:11.250+02:00"))
    assert signal.time == "2026-11-25T06:02:11.250Z"
    assert signal.time_ms == 1795586531250


def test_absent_time_is_the_record_timestamp() -> None:
    signal = parse(sig(time=None))
    assert (signal.time, signal.time_ms) == (TS_TEXT, TS)


def test_bad_time_names_the_field() -> None:
    assert reason(sig(time="2026-11-25 06:02")) == (
        "time: not RFC 3339 with an offset: '2026-11-25 06:02'"
    )
    assert reason(sig(time=1795586531000)) == "time: must be an RFC 3339 string, got integer"


def test_record_timestamp_out_of_range() -> None:
    with pytest.raises(SignalError) as info:
        parse_record(b'{"name":"x","params":{}}', [], 10**18)
    assert info.value.reason.startswith("timestamp: record timestamp")


# -- the value as a whole -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"), [(b"[]", "array"), (b"1", "integer"), (b'"x"', "string"), (b"null", "null")]
)
def test_value_must_be_an_object(value: bytes, kind: str) -> None:
    with pytest.raises(SignalError) as info:
        parse_record(value, [], TS)
    assert info.value.reason == f"value: must be a JSON object, got {kind}"


def test_tombstone_and_empty_value() -> None:
    with pytest.raises(SignalError) as info:
        parse_record(None, [], TS)
    assert info.value.reason == "value: empty record (null value)"
    with pytest.raises(SignalError) as info:
        parse_record(b"", [], TS)
    assert info.value.reason == "value: empty record (0 bytes)"


def test_headers_do_not_matter_for_native_records() -> None:
    value = json.dumps(sig()).encode()
    headers = [("content-type", b"application/json"), ("trace", None), ("x", b"\xff")]
    assert parse_record(value, headers, TS) == parse_record(value, [], TS)


def test_bool_is_never_confused_with_int() -> None:
    one = parse(sig(params={"v": 1}))
    true = parse(sig(params={"v": True}))
    assert type(one.params["v"]) is int
    assert type(true.params["v"]) is bool
    assert one.id != true.id
