"""Signals: the announced facts flagman consumes, and how a Kafka record becomes one.

Pure: no Kafka, no I/O, no logging, no clock reads. ``parse_record`` is the single
entry point for a record; anything it rejects raises ``SignalError``, whose one-line
``reason`` names the field and is what the dead-letter topic carries.
"""

from ._canonical import canonical_json, identity_hash
from ._errors import SignalError
from ._json import MAX_VALUE_BYTES
from ._model import ParamValue, Signal, SignalRef
from ._parse import parse_record
from ._time import format_time_ms
from ._validate import MAX_PARAMS

__all__ = [
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
