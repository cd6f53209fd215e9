"""The public surface of ``signals`` is declared once; this pins it."""

import signals


def test_all_is_pinned() -> None:
    assert sorted(signals.__all__) == [
        "MAX_PARAMS",
        "MAX_VALUE_BYTES",
        "ParamValue",
        "Signal",
        "SignalError",
        "SignalRef",
        "canonical_json",
        "format_time_ms",
        "identity_hash",
        "parse_record",
    ]


def test_every_exported_name_exists() -> None:
    for name in signals.__all__:
        assert hasattr(signals, name), name


def test_limits() -> None:
    assert signals.MAX_VALUE_BYTES == 1_048_576
    assert signals.MAX_PARAMS == 64


def test_signal_error_is_an_exception_with_a_reason() -> None:
    err = signals.SignalError("name: required")
    assert isinstance(err, Exception)
    assert err.reason == "name: required"
    assert str(err) == "name: required"
