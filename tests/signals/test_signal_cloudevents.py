"""CloudEvents 1.0 over Kafka: structured and binary mode, and their mapping to signals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signals import ParamValue, Signal, SignalError, parse_record

TS = 1764050531512
TS_TEXT = "2025-11-25T06:02:11.512Z"
Headers = list[tuple[str, bytes | None]]

DATA = {
    "table": "db.orders",
    "dt": "2026-11-25",
    "rows": 120331,
    "ratio": 0.5,
    "ok": True,
    "note": None,
    "parts": [1, 2],
    "meta": {"a": 1},
}
SCALARS: dict[str, ParamValue] = {
    "table": "db.orders",
    "dt": "2026-11-25",
    "rows": 120331,
    "ratio": 0.5,
    "ok": True,
}


def event(**members: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "type": "table_ready",
        "id": "evt-1",
        "source": "/etl/orders",
        "time": "2026-11-25T06:02:11Z",
        "data": DATA,
    }
    base.update(members)
    return {key: value for key, value in base.items() if value is not ...}


def structured(obj: Any, headers: Headers | None = None) -> Signal:
    return parse_record(json.dumps(obj).encode(), headers or [], TS)


def structured_reason(obj: Any) -> str:
    with pytest.raises(SignalError) as info:
        structured(obj)
    return info.value.reason


def ce_headers(**attrs: str | None) -> Headers:
    base: dict[str, str | None] = {
        "ce_specversion": "1.0",
        "ce_type": "table_ready",
        "ce_id": "evt-1",
        "ce_source": "/etl/orders",
    }
    base.update(attrs)
    return [(key, None if value is None else value.encode()) for key, value in base.items()]


def binary_reason(value: bytes | None, headers: Headers) -> str:
    with pytest.raises(SignalError) as info:
        parse_record(value, headers, TS)
    return info.value.reason


# -- structured mode ----------------------------------------------------------------


def test_structured_mapping() -> None:
    signal = structured(event(subject="orders", dataschema="s://x", traceparent="00-ab"))
    assert signal == Signal(
        name="table_ready",
        params=SCALARS,
        id="evt-1",
        time="2026-11-25T06:02:11Z",
        time_ms=1795586531000,
        source="/etl/orders",
        payload=DATA,
        explicit_id=True,
        encoding="cloudevents",
        extra={"subject": "orders", "dataschema": "s://x", "traceparent": "00-ab"},
    )
    assert signal.identity == ("table_ready", "evt-1")


def test_structured_by_content_type_header() -> None:
    headers: Headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    signal = structured(event(), headers)
    assert signal.encoding == "cloudevents"
    with pytest.raises(SignalError) as info:
        structured({"name": "x", "params": {}}, headers)
    assert info.value.reason == "specversion: required"


def test_structured_without_time_uses_the_record_timestamp() -> None:
    signal = structured(event(time=...))
    assert (signal.time, signal.time_ms) == (TS_TEXT, TS)


@pytest.mark.parametrize(
    ("data", "params"),
    [
        (..., {}),
        (None, {}),
        ("text", {}),
        ([1, 2], {}),
        (7, {}),
        ({}, {}),
        ({"a": None, "b": [], "c": {}}, {}),
        ({"n": 7, "s": "7", "b": False}, {"n": 7, "s": "7", "b": False}),
    ],
)
def test_data_members_to_params(data: Any, params: dict[str, Any]) -> None:
    signal = structured(event(data=data))
    assert signal.params == params
    assert signal.payload == (None if data is ... else data)


def test_data_params_obey_the_params_rules() -> None:
    assert structured_reason(event(data={"s": "x" * 1025})) == (
        "data.s: string longer than 1024 characters (1025)"
    )
    assert structured_reason(event(data={"bad key": 1})).startswith("data: key 'bad key' must")
    assert structured_reason(event(data={"n": 2**63})) == (
        "data.n: integer outside the signed 64-bit range"
    )
    many = {f"k{i}": i for i in range(65)}
    assert structured_reason(event(data=many)) == (
        "data: at most 64 string, number or boolean members, got 65"
    )
    many_but_nested = {f"k{i}": [i] for i in range(100)} | {"x": 1}
    assert structured(event(data=many_but_nested)).params == {"x": 1}


def test_non_scalar_members_are_exempt_from_the_params_rules() -> None:
    data = {"bad key": None, "long": ["x" * 5000], "n": {"big": 2**70}}
    signal = structured(event(data=data))
    assert signal.params == {}
    assert signal.payload == data


@pytest.mark.parametrize("attr", ["type", "id", "source"])
def test_required_attributes(attr: str) -> None:
    assert structured_reason(event(**{attr: ...})) == f"{attr}: required"
    assert structured_reason(event(**{attr: None})) == f"{attr}: required, got null"


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("0.3", "specversion: only '1.0' is supported, got '0.3'"),
        ("1", "specversion: only '1.0' is supported, got '1'"),
        (1.0, "specversion: only '1.0' is supported, got number"),
        (None, "specversion: required"),
    ],
)
def test_only_specversion_1_0(version: Any, message: str) -> None:
    assert structured_reason(event(specversion=version)) == message


def test_structured_attribute_rules() -> None:
    assert structured_reason(event(type="table ready")).startswith("type: must match ")
    assert structured_reason(event(id="")) == "id: must not be empty"
    assert structured_reason(event(id="i" * 257)) == "id: longer than 256 characters (257)"
    assert structured(event(id="i" * 256)).id == "i" * 256
    assert structured_reason(event(source="")) == "source: must not be empty"
    assert structured_reason(event(id=5)) == "id: must be a string, got integer"
    assert structured_reason(event(time="yesterday")) == (
        "time: not RFC 3339 with an offset: 'yesterday'"
    )


def test_data_base64_is_rejected() -> None:
    assert structured_reason(event(data=..., data_base64="aGk=")) == (
        "data_base64: binary data is not supported; send JSON in data"
    )


# -- binary mode --------------------------------------------------------------------


def test_binary_mapping() -> None:
    headers = ce_headers(ce_time="2026-11-25T07:02:11+01:00", ce_subject="orders")
    headers += [("content-type", b"application/json"), ("traceparent", b"00-ab")]
    signal = parse_record(json.dumps(DATA).encode(), headers, TS)
    assert signal == Signal(
        name="table_ready",
        params=SCALARS,
        id="evt-1",
        time="2026-11-25T06:02:11Z",
        time_ms=1795586531000,
        source="/etl/orders",
        payload=DATA,
        explicit_id=True,
        encoding="cloudevents-binary",
        extra={"subject": "orders", "datacontenttype": "application/json"},
    )


def test_binary_and_structured_agree() -> None:
    binary = parse_record(json.dumps(DATA).encode(), ce_headers(), TS)
    struct = structured(event(time=...))
    assert binary.identity == struct.identity
    assert (binary.params, binary.payload, binary.time) == (
        struct.params,
        struct.payload,
        struct.time,
    )


def test_binary_mode_wins_over_content() -> None:
    value = json.dumps({"name": "other", "params": {"x": 1}}).encode()
    signal = parse_record(value, ce_headers(), TS)
    assert signal.name == "table_ready"
    assert signal.params == {"name": "other"}
    assert signal.payload == {"name": "other", "params": {"x": 1}}


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "text/json",
     "application/vnd.acme+json", "APPLICATION/JSON"],
)  # fmt: skip
def test_binary_json_content_types(content_type: str | None) -> None:
    headers = ce_headers()
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    assert parse_record(b'{"a": 1}', headers, TS).params == {"a": 1}


def test_binary_non_json_data_is_text() -> None:
    headers = [*ce_headers(), ("content-type", b"text/plain")]
    signal = parse_record(b"{not json", headers, TS)
    assert signal.payload == "{not json"
    assert signal.params == {}
    assert binary_reason(b"\xff", headers) == "value: not valid UTF-8 (byte 0)"


@pytest.mark.parametrize("value", [None, b""])
def test_binary_empty_value_means_no_data(value: bytes | None) -> None:
    signal = parse_record(value, ce_headers(), TS)
    assert signal.payload is None
    assert signal.params == {}


def test_binary_non_object_data_gives_no_params() -> None:
    assert parse_record(b"[1, 2]", ce_headers(), TS).params == {}
    assert parse_record(b'"x"', ce_headers(), TS).payload == "x"


def test_binary_json_data_is_strict() -> None:
    assert binary_reason(b"{nope", ce_headers()).startswith("value: not JSON: ")
    assert binary_reason(b'{"a":1,"a":2}', ce_headers()) == "value: duplicate key 'a'"
    assert binary_reason(b'{"a":"\\udc00"}', ce_headers()) == (
        "data.a: invalid Unicode (lone surrogate U+DC00)"
    )
    assert binary_reason(b'{"s":"' + b"x" * 1025 + b'"}', ce_headers()) == (
        "data.s: string longer than 1024 characters (1025)"
    )


@pytest.mark.parametrize("attr", ["ce_type", "ce_id", "ce_source"])
def test_binary_required_headers(attr: str) -> None:
    headers = [(key, value) for key, value in ce_headers() if key != attr]
    assert binary_reason(b"{}", headers) == f"header {attr}: required"


def test_binary_header_rules() -> None:
    assert binary_reason(b"{}", ce_headers(ce_specversion="0.3")) == (
        "header ce_specversion: only '1.0' is supported, got '0.3'"
    )
    assert binary_reason(b"{}", ce_headers(ce_id=None)) == "header ce_id: null value"
    assert binary_reason(b"{}", ce_headers(ce_id="")) == "header ce_id: must not be empty"
    assert binary_reason(b"{}", ce_headers(ce_type="a b")).startswith(
        "header ce_type: must match [A-Za-z0-9_.:-]{1,200}"
    )
    assert binary_reason(b"{}", ce_headers(ce_source="")) == "header ce_source: must not be empty"
    assert binary_reason(b"{}", ce_headers(ce_time="2026-11-25")) == (
        "header ce_time: not RFC 3339 with an offset: '2026-11-25'"
    )
    bad_utf8 = [(k, b"\xffid" if k == "ce_id" else v) for k, v in ce_headers()]
    assert binary_reason(b"{}", bad_utf8) == "header ce_id: not valid UTF-8 (byte 0)"
    repeated = [*ce_headers(), ("ce_id", b"evt-2")]
    assert binary_reason(b"{}", repeated) == "header ce_id: repeated"


def test_binary_extension_headers_go_to_extra() -> None:
    headers = [*ce_headers(ce_partitionkey="k1"), ("ce_traceparent", b"00-ab")]
    signal = parse_record(b"{}", headers, TS)
    assert signal.extra == {"partitionkey": "k1", "traceparent": "00-ab"}
