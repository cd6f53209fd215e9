"""The signal model: one announced fact, as the matcher and the store see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ParamValue = str | int | float | bool
"""A param value: JSON string, integer, finite float or boolean (never null or nested)."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A validated signal.

    ``id`` is the signal's identity within its ``name``: the producer's explicit id, or,
    when absent, ``identity_hash(name, params)`` (so re-announcing the same fact is a
    duplicate). ``explicit_id`` tells which. ``time`` is RFC 3339 UTC text
    (``2026-11-25T06:02:11Z``, fractional seconds kept when given) and ``time_ms`` the
    same instant in epoch milliseconds. ``encoding`` is ``native``, ``cloudevents`` or
    ``cloudevents-binary``.

    Time normal form: a zero fraction is dropped, a fraction of whole milliseconds is
    written with three digits, any other with six (digits past microseconds are cut).
    A record without a time takes its Kafka timestamp, always written with three
    digits (``2026-11-25T06:02:11.512Z``).
    """

    name: str
    params: dict[str, ParamValue]
    id: str
    time: str
    time_ms: int
    source: str | None = None
    payload: Any = None
    explicit_id: bool = True
    encoding: str = "native"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str]:
        """``(name, id)``: two records with the same identity are the same signal."""
        return (self.name, self.id)


@dataclass(frozen=True, slots=True)
class SignalRef:
    """Where a stored signal came from: enough for lineage, replay and templates."""

    seq: int
    name: str
    id: str
    topic: str
    partition: int
    offset: int
    time: str
    params: dict[str, ParamValue]
    payload: Any = None
