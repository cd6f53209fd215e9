"""Identity of signals without an id, and the canonical JSON it is built on."""

from __future__ import annotations

import hashlib
import json
from enum import IntEnum, StrEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from signals import canonical_json, identity_hash, parse_record

TS = 1764050531512


def signal_id(name: str, params: dict[str, Any], ts: int = TS, **extra: Any) -> str:
    value = json.dumps({"name": name, "params": params, **extra}).encode()
    return parse_record(value, [], ts).id


def test_identity_hash_definition() -> None:
    params = {"table": "db.orders", "dt": "2026-11-25"}
    expected = hashlib.sha256(
        b'["table_ready",{"dt":"2026-11-25","table":"db.orders"}]'
    ).hexdigest()
    assert identity_hash("table_ready", params) == expected
    assert identity_hash("table_ready", params) == (
        hashlib.sha256(rfc8785.dumps(["table_ready", params])).hexdigest()
    )
    assert len(expected) == 64 and expected == expected.lower()


def test_absent_id_is_the_identity_hash() -> None:
    assert signal_id("t", {"a": 1}) == identity_hash("t", {"a": 1})


def test_key_order_does_not_matter() -> None:
    one = b'{"name":"t","params":{"a":1,"b":"x","c":true}}'
    two = b'{"params":{"c":true,"b":"x","a":1},"name":"t"}'
    assert parse_record(one, [], TS).id == parse_record(two, [], TS).id


def test_what_does_not_count_towards_identity() -> None:
    base = signal_id("t", {"a": 1})
    assert signal_id("t", {"a": 1}, ts=0) == base
    assert (
        signal_id("t", {"a": 1}, payload={"rows": 5}, source="s", time="2026-01-01T00:00:00Z")
        == base
    )
    assert signal_id("t", {"a": 1}, extra_member=True) == base


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"v": 7}, {"v": "7"}),
        ({"v": 1}, {"v": True}),
        ({"v": 0}, {"v": False}),
        ({"v": "true"}, {"v": True}),
        ({"v": 1}, {"w": 1}),
        ({}, {"v": ""}),
        ({"v": 2**53}, {"v": 2**53 + 1}),
        ({"v": 2**63 - 1}, {"v": 2**63 - 2}),
    ],
)
def test_json_types_and_values_matter(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert signal_id("t", left) != signal_id("t", right)


def test_name_matters() -> None:
    assert signal_id("a", {"v": 1}) != signal_id("b", {"v": 1})


def test_json_numbers_have_no_int_float_distinction() -> None:
    assert signal_id("t", {"v": 7}) == signal_id("t", {"v": 7.0})


def test_canonical_json_examples() -> None:
    assert canonical_json({"b": [1, 2.5, None], "a": {"y": True, "x": "é\n"}}) == (
        '{"a":{"x":"é\\n","y":true},"b":[1,2.5,null]}'.encode()
    )
    assert canonical_json(1e21) == b"1e+21"
    assert canonical_json(-0.0) == b"0"
    assert canonical_json(2**63 - 1) == b"9223372036854775807"  # exact, beyond rfc8785
    assert canonical_json(("a",)) == b'["a"]'


def test_canonical_json_sorts_keys_by_utf16() -> None:
    # U+1F600 is D83D DE00 in UTF-16, which sorts before U+FB01 (unlike code points)
    obj = {"\ufb01": 1, "\U0001f600": 2, "a": 3}
    assert canonical_json(obj) == rfc8785.dumps(obj)
    assert canonical_json(obj).index("\U0001f600".encode()) < canonical_json(obj).index(
        "\ufb01".encode()
    )


def test_canonical_json_subclasses() -> None:
    class Colour(StrEnum):
        RED = "red"

    class Size(IntEnum):
        BIG = 3

    assert canonical_json([Colour.RED, Size.BIG]) == b'["red",3]'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "\ud800"])
def test_canonical_json_rejects_what_json_cannot_carry(bad: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json([bad])


@pytest.mark.parametrize("bad", [object(), {1: "a"}, {("a",): 1}, b"x"])
def test_canonical_json_rejects_non_json_types(bad: Any) -> None:
    with pytest.raises(TypeError):
        canonical_json(bad)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_canonical_json_matches_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_numbers_as_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _numbers_as_floats(item) for key, item in value.items()}
    if type(value) is int:
        return float(value)
    return value


@given(json_values)
def test_canonical_json_is_json_of_the_same_value(value: Any) -> None:
    # JSON numbers are doubles: compare as such (JCS writes 4.540992295334625e16 as
    # 45409922953346250, which Python would read back as a different int).
    decoded = json.loads(canonical_json(value))
    assert _numbers_as_floats(decoded) == _numbers_as_floats(value)
