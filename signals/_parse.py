"""``parse_record``: one Kafka record in, one validated ``Signal`` out, or ``SignalError``.

Three encodings, told apart in this order:

* CloudEvents binary mode: a ``ce_specversion`` header. Attributes come from the
  ``ce_*`` headers, ``content-type`` is the data content type, the value is the data.
* CloudEvents structured mode: a ``content-type`` header starting with
  ``application/cloudevents+json``, or a value that is a JSON object with a
  ``specversion`` member.
* Native: anything else.

For optional members, JSON ``null`` means absent (as in the CloudEvents JSON format).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from ._canonical import identity_hash
from ._errors import SignalError, json_type, show
from ._json import MAX_VALUE_BYTES, decode_json
from ._model import Signal
from ._time import format_time_ms, parse_time
from ._validate import check_id, check_name, check_params, check_source, data_params

_NATIVE_MEMBERS = frozenset({"name", "params", "id", "source", "time", "payload"})
_CE_MEMBERS = frozenset({"specversion", "type", "id", "source", "time", "data"})
_CE_HEADERS = frozenset({"ce_specversion", "ce_type", "ce_id", "ce_source", "ce_time"})
_STRUCTURED_TYPE = "application/cloudevents+json"


def parse_record(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]], timestamp_ms: int
) -> Signal:
    """Turn a Kafka record's value, headers and timestamp into a validated signal.

    ``timestamp_ms`` (the record's timestamp) becomes the signal's time when the record
    carries none. Raises ``SignalError``, and nothing else, for any input that breaks
    the contract: its ``reason`` is one line naming the field.
    """
    content_type: str | None = None
    binary = False
    for key, raw in headers:
        if key == "ce_specversion":
            binary = True
        elif len(key) == 12 and content_type is None and key.lower() == "content-type" and raw:
            content_type = str(raw, "utf-8", "replace").strip()
    if value is not None and len(value) > MAX_VALUE_BYTES:
        raise SignalError(
            f"value: {len(value)} bytes is over the limit of {MAX_VALUE_BYTES} bytes (1 MiB)"
        )
    if binary:
        return _binary(value, headers, content_type, timestamp_ms)
    if value is None:
        raise SignalError("value: empty record (null value)")
    if not value:
        raise SignalError("value: empty record (0 bytes)")
    obj = decode_json(value)
    if type(obj) is not dict:
        raise SignalError(f"value: must be a JSON object, got {json_type(obj)}")
    if "specversion" in obj or (
        content_type is not None and content_type.lower().startswith(_STRUCTURED_TYPE)
    ):
        return _structured(obj, timestamp_ms)
    return _native(obj, timestamp_ms)


def _native(obj: dict[str, Any], timestamp_ms: int) -> Signal:
    # The hot path: written out flat, with the checks for absent members inlined.
    name = obj.get("name")
    if name is None:
        _absent(obj, "name", "name")
    name = check_name(name, "name")
    params = obj.get("params")
    if params is None:
        _absent(obj, "params", "params")
    params = check_params(params, "params")
    source = obj.get("source")
    if source is not None:
        source = check_source(source, "source")
    raw_time = obj.get("time")
    if raw_time is None:
        time, time_ms = _record_time(timestamp_ms)
    else:
        time, time_ms = parse_time(raw_time, "time")
    extra = (
        {} if _NATIVE_MEMBERS.issuperset(obj) else
        {key: item for key, item in obj.items() if key not in _NATIVE_MEMBERS}
    )  # fmt: skip
    raw_id = obj.get("id")
    if raw_id is None:
        return Signal(
            name, params, identity_hash(name, params), time, time_ms, source,
            obj.get("payload"), False, "native", extra,
        )  # fmt: skip
    return Signal(
        name, params, check_id(raw_id, "id"), time, time_ms, source,
        obj.get("payload"), True, "native", extra,
    )  # fmt: skip


def _structured(obj: dict[str, Any], timestamp_ms: int) -> Signal:
    _check_specversion(obj.get("specversion"), "specversion")
    name = check_name(_required(obj, "type", "type"), "type")
    id_ = check_id(_required(obj, "id", "id"), "id")
    source = check_source(_required(obj, "source", "source"), "source", required=True)
    if obj.get("data_base64") is not None:
        raise SignalError("data_base64: binary data is not supported; send JSON in data")
    raw_time = obj.get("time")
    time, time_ms = _record_time(timestamp_ms) if raw_time is None else parse_time(raw_time, "time")
    data = obj.get("data")
    params = data_params(data, "data")
    extra = {key: item for key, item in obj.items() if key not in _CE_MEMBERS}
    return Signal(name, params, id_, time, time_ms, source, data, True, "cloudevents", extra)


def _binary(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    content_type: str | None,
    timestamp_ms: int,
) -> Signal:
    attrs: dict[str, str] = {}
    for key, raw in headers:
        if not key.startswith("ce_"):
            continue
        if key in attrs:
            raise SignalError(f"header {key}: repeated")
        if raw is None:
            raise SignalError(f"header {key}: null value")
        try:
            attrs[key] = str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise SignalError(f"header {key}: not valid UTF-8 (byte {exc.start})") from exc
    _check_specversion(attrs["ce_specversion"], "header ce_specversion")
    name = check_name(_required(attrs, "ce_type", "header ce_type"), "header ce_type")
    id_ = check_id(_required(attrs, "ce_id", "header ce_id"), "header ce_id")
    source = check_source(
        _required(attrs, "ce_source", "header ce_source"), "header ce_source", required=True
    )
    raw_time = attrs.get("ce_time")
    time, time_ms = (
        _record_time(timestamp_ms) if raw_time is None else parse_time(raw_time, "header ce_time")
    )
    extra: dict[str, Any] = {key[3:]: item for key, item in attrs.items() if key not in _CE_HEADERS}
    if content_type is not None:
        extra["datacontenttype"] = content_type
    data = _binary_data(value, content_type)
    params = data_params(data, "data")
    return Signal(name, params, id_, time, time_ms, source, data, True, "cloudevents-binary", extra)


def _binary_data(value: bytes | None, content_type: str | None) -> Any:
    """The data of a binary-mode event: JSON when the content type says so (or is
    absent), otherwise UTF-8 text; ``None`` for an empty value."""
    if not value:
        return None
    if content_type is None or _is_json(content_type):
        return decode_json(value, "data")
    try:
        return str(value, "utf-8")
    except UnicodeDecodeError as exc:
        raise SignalError(f"value: not valid UTF-8 (byte {exc.start})") from exc


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _check_specversion(value: Any, field: str) -> None:
    if value == "1.0" and type(value) is str:
        return
    if value is None:
        raise SignalError(f"{field}: required")
    got = show(value) if isinstance(value, str) else json_type(value)
    raise SignalError(f"{field}: only '1.0' is supported, got {got}")


def _required(obj: dict[str, Any] | dict[str, str], key: str, field: str) -> Any:
    value = obj.get(key)
    if value is None:
        _absent(obj, key, field)
    return value


def _absent(obj: dict[str, Any] | dict[str, str], key: str, field: str) -> NoReturn:
    if key in obj:
        raise SignalError(f"{field}: required, got null")
    raise SignalError(f"{field}: required")


def _record_time(timestamp_ms: int) -> tuple[str, int]:
    try:
        return format_time_ms(timestamp_ms), timestamp_ms
    except (OverflowError, ValueError) as exc:
        raise SignalError(
            f"timestamp: record timestamp {timestamp_ms} ms is outside years 1-9999"
        ) from exc
