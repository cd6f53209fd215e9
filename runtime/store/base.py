"""The store seam: what the worker, apply and recovery ask of a database.

Only ``store/sql.py`` implements it (SQLite and PostgreSQL through SQLAlchemy); tests
use the real thing with both backends rather than a fake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from triggers import Hit, Matcher, MatchState


class StoreError(Exception):
    """A database operation failed.

    ``transient`` errors (connection lost, lock timeout, deadlock, conflict) make the
    worker retry the whole batch with backoff; others (a malformed statement, a type
    the driver refuses) are bugs and stop the worker rather than wedge it silently.
    ``constraint``: a constraint refused a row. The retry starts from the stored
    state, which can clear it, so it is retried, but only a few times in a row.
    """

    def __init__(self, message: str, *, transient: bool = True, constraint: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.constraint = constraint


@dataclass(slots=True)
class SignalRow:
    """A new signal to insert, with the Kafka position it came from."""

    name: str
    sig_id: str
    explicit_id: bool
    source: str | None
    time: str
    time_ms: int
    params: str
    payload: str | None
    encoding: str
    topic: str
    partition: int
    offset: int
    record_ts_ms: int


@dataclass(slots=True)
class FiringRow:
    command_id: str
    trigger_id: str
    trigger_version: int
    tk: str
    generation: int
    cause_seq: int
    consumed: str | None
    command: str
    workflow: str
    source_topic: str
    source_partition: int
    cmd_partition: int
    scan_from: int
    created_ms: int
    cause_offset: int = -1
    """Not stored: where the completing signal sat, for the log line."""
    cause_signal: str = ""
    fid: int = 0
    """Given when stored."""


@dataclass(slots=True)
class PendingCommand:
    command_id: str
    workflow: str
    command: str
    cmd_partition: int
    scan_from: int
    fid: int


@dataclass(slots=True)
class TriggerRow:
    id: str
    version: int
    digest: str
    definition: dict[str, Any]
    active: bool
    revision: int
    applied_ms: int
    min_seq: int
    backfilled: int = 0


@dataclass(slots=True)
class StoredTrigger:
    """A ``triggers`` row as a worker loads it: the compact form (``triggers.compact_form``)
    and, only for a row stored without one, the definition's JSON text."""

    id: str
    version: int
    active: bool
    revision: int
    min_seq: int
    backfilled: int
    compiled: str | None
    definition: str | None


class Tx(Protocol):
    """One batch's transaction: lock, refresh, insert, commit (on leaving the block)."""

    async def lock(self, tuple_keys: Iterable[str]) -> None: ...
    async def refresh(self, tuple_keys: Iterable[str], matcher: Matcher, state: MatchState) -> None: ...
    async def insert_signals(self, rows: Sequence[SignalRow]) -> list[int | None]: ...
    async def insert_hits(self, hits: Sequence[Hit]) -> None: ...
    async def insert_firings(self, rows: Sequence[FiringRow]) -> None: ...
    async def signal_refs(self, seqs: Iterable[int]) -> dict[int, Any]: ...
    async def mark_published(self, fids: Sequence[int]) -> None: ...
    async def dead_letters(self, rows: Sequence[tuple[str, int, int, str, int]]) -> None: ...
