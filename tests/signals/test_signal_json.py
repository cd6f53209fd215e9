"""Decoding a record value: size, UTF-8, strict JSON, and inputs that crash naive parsers."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import pytest

from signals import MAX_VALUE_BYTES, SignalError, parse_record

TS = 1764050531512


def reason(value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()) -> str:
    with pytest.raises(SignalError) as info:
        parse_record(value, headers, TS)
    return info.value.reason


def padded(size: int) -> bytes:
    """A valid native signal of exactly ``size`` bytes."""
    head = b'{"name":"big","params":{},"payload":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_size_limit_is_inclusive() -> None:
    value = padded(MAX_VALUE_BYTES)
    assert len(value) == 1_048_576
    assert parse_record(value, [], TS).name == "big"
    assert reason(padded(MAX_VALUE_BYTES + 1)) == (
        "value: 1048577 bytes is over the limit of 1048576 bytes (1 MiB)"
    )


def test_size_is_checked_before_decoding() -> None:
    assert reason(b"\xff" * (MAX_VALUE_BYTES + 1)).startswith("value: 1048577 bytes")


def test_size_limit_applies_in_binary_mode() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_type", b"t"), ("ce_id", b"1"), ("ce_source", b"s")]
    assert reason(b" " * (MAX_VALUE_BYTES + 1), headers).startswith("value: 1048577 bytes")


def test_invalid_utf8_names_the_byte() -> None:
    value = b'{"name":"x","p\xfframs":{}}'
    assert reason(value) == "value: not valid UTF-8 (byte 14)"


def test_overlong_and_surrogate_encodings_are_not_utf8() -> None:
    assert reason(b'{"name":"\xc0\xaf"}') == "value: not valid UTF-8 (byte 9)"
    assert reason(b'{"name":"\xed\xa0\x80"}') == "value: not valid UTF-8 (byte 9)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "value: not JSON: Expecting value at line 1 column 1"),
        (
            b"{",
            "value: not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (b'{"name":"x"} x', "value: not JSON: Extra data at line 1 column 13"),
        (
            b'{"a":1,}',
            "value: not JSON: Expecting property name enclosed in double quotes at line 1 column 8",
        ),
        (
            b"{'a':1}",
            "value: not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (b'{"a":"\n"}', "value: not JSON: Invalid control character at line 1 column 7"),
        (b"\xef\xbb\xbf{}", "value: not JSON: starts with a byte order mark"),
        (b"   ", "value: not JSON: Expecting value at line 1 column 4"),
    ],
)
def test_not_json(value: bytes, message: str) -> None:
    assert reason(value) == message


def test_surrounding_whitespace_is_fine() -> None:
    assert parse_record(b' \n\t{"name":"x","params":{}}\r\n ', [], TS).name == "x"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_rejected_anywhere(literal: str) -> None:
    in_params = f'{{"name":"x","params":{{"v":{literal}}}}}'.encode()
    in_payload = f'{{"name":"x","params":{{}},"payload":[{literal}]}}'.encode()
    assert reason(in_params) == f"value: {literal} is not a valid JSON number"
    assert reason(in_payload) == f"value: {literal} is not a valid JSON number"


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1" + "0" * 400 + ".0"])
def test_numbers_that_overflow_to_infinity_are_rejected(literal: str) -> None:
    value = f'{{"name":"x","params":{{}},"payload":{literal}}}'.encode()
    assert reason(value).startswith("value: number out of range: ")


def test_duplicate_keys_are_rejected_and_named() -> None:
    assert reason(b'{"name":"a","params":{},"name":"b"}') == "value: duplicate key 'name'"
    assert reason(b'{"name":"a","params":{"dt":1,"dt":1}}') == "value: duplicate key 'dt'"
    nested = b'{"name":"a","params":{},"payload":[{"k":1,"k":2}]}'
    assert reason(nested) == "value: duplicate key 'k'"


@pytest.mark.parametrize("depth", [129, 1_000, 10_000, 100_000])
def test_deep_nesting_is_a_signal_error(depth: int) -> None:
    value = b'{"name":"x","params":{},"payload":' + b"[" * depth + b"]" * depth + b"}"
    assert reason(value) == "value: JSON nested deeper than 128 levels"
    objects = b'{"name":"x","params":{},"payload":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    assert reason(objects) == "value: JSON nested deeper than 128 levels"


def test_deep_unclosed_nesting_is_a_signal_error() -> None:
    assert reason(b"[" * 50_000).startswith("value: ")


def test_nesting_up_to_the_limit_is_fine() -> None:
    # the signal object is level 1, so the payload may nest 127 levels
    value = b'{"name":"x","params":{},"payload":' + b"[" * 127 + b"]" * 127 + b"}"
    assert parse_record(value, [], TS).payload is not None
    many = json.dumps({"name": "x", "params": {}, "payload": [[1]] * 1000}).encode()
    assert len(parse_record(many, [], TS).payload) == 1000


def test_huge_integers_are_a_signal_error() -> None:
    digits = sys.get_int_max_str_digits() or 4300
    value = b'{"name":"x","params":{},"payload":' + b"9" * (digits + 1) + b"}"
    assert reason(value) == (
        f"value: number too long: integer literals are limited to {digits} digits"
    )


def test_big_integers_in_the_payload_are_fine() -> None:
    value = b'{"name":"x","params":{},"payload":' + b"9" * 100 + b"}"
    assert parse_record(value, [], TS).payload == int("9" * 100)


def test_lone_surrogates_are_rejected_with_their_place() -> None:
    assert reason(b'{"name":"x","params":{"k":"\\ud800"}}') == (
        "params.k: invalid Unicode (lone surrogate U+D800)"
    )
    assert reason(b'{"name":"x","params":{},"payload":{"a":[1,"\\uDFFF"]}}') == (
        "payload.a[1]: invalid Unicode (lone surrogate U+DFFF)"
    )
    assert reason(b'{"name":"x","params":{},"\\ud800":1}') == (
        "value['\\ud800']: invalid Unicode (lone surrogate U+D800)"
    )


def test_surrogate_pairs_are_fine() -> None:
    signal = parse_record(b'{"name":"x","params":{"e":"\\ud83d\\ude00"}}', [], TS)
    assert signal.params == {"e": "\U0001f600"}
    assert parse_record(b'{"name":"x","params":{"e":"\\\\ud800"}}', [], TS).params == {
        "e": "\\ud800"
    }


@pytest.mark.parametrize(
    "value",
    [
        b'{"name":"a\\nb","params":{}}',
        b'{"name":"x","params":{"k":"v"},"time":"\\u2028\\r\\n\\u0000"}',
        b'{"name":"x","params":{"bad key\\n":"v"}}',
        b'{"name":"x","params":{},"a":1,"a":2}'.replace(b'"a"', b'"a\\n\\u0085"'),
        b'{"name":"' + b"y" * 5000 + b'\\n","params":{}}',
    ],
)
def test_reasons_are_single_short_lines(value: bytes) -> None:
    message = reason(value)
    assert "\n" not in message and "\r" not in message
    assert all(ch >= " " and ch not in "\x7f\x85\u2028\u2029" for ch in message)
    assert len(message) < 300
