"""The worker's live trigger set: stored rows compiled into the matcher's index."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from triggers import (
    CompiledTrigger,
    LeafClassRegistry,
    Matcher,
    compile_compact,
    compile_trigger,
)

from .store.base import StoredTrigger, TriggerRow
from .store.sql import SqlStore


@dataclass(slots=True)
class TriggerSet:
    """Keeps the matcher's index in step with the ``triggers`` table by revision."""

    matcher: Matcher
    revision: int = 0
    unevaluated: set[str] = field(default_factory=set)
    """Installed triggers whose stored ``backfilled`` version is below their version: no
    worker evaluated their look-back yet (kept only for those: a million-entry map of
    every trigger would cost some 50 MB)."""

    async def load(self, store: SqlStore) -> tuple[list[CompiledTrigger], int]:
        """Absorb every row changed since ``revision``, page by page; returns the
        triggers installed that may need a backfill (see ``absorb``) and the row count."""
        fresh: dict[str, CompiledTrigger] = {}
        n = 0
        async for rows in store.trigger_pages(self.revision):
            n += len(rows)
            self._absorb(rows, fresh)
        self.matcher.index.registry.settle()
        return list(fresh.values()), n

    def absorb(self, rows: Iterable[TriggerRow | StoredTrigger]) -> list[CompiledTrigger]:
        """Install/replace/remove triggers from stored rows (ordered by revision).

        Returns the installed triggers whose look-back has not been evaluated for this
        version (by this or any worker), i.e. those needing a backfill.
        """
        fresh: dict[str, CompiledTrigger] = {}
        self._absorb(rows, fresh)
        self.matcher.index.registry.settle()
        return list(fresh.values())

    def _absorb(self, rows: Iterable[TriggerRow | StoredTrigger],
                fresh: dict[str, CompiledTrigger]) -> None:
        index = self.matcher.index
        registry = index.registry
        installed = index.triggers
        unevaluated = self.unevaluated
        ints: dict[int, int] = {}  # one int object per distinct horizon, not one per trigger
        for row in rows:
            if row.revision > self.revision:
                self.revision = row.revision
            if not row.active:
                index.remove(row.id)
                fresh.pop(row.id, None)
                unevaluated.discard(row.id)
                continue
            current = installed.get(row.id)
            if current is not None and current.version == row.version:
                continue
            trig = _compile(row, registry)
            # seqs start at 1: a horizon of 1 excludes nothing, and 0 keeps the hot path
            min_seq = row.min_seq if row.min_seq > 1 else 0
            trig.min_seq = ints.setdefault(min_seq, min_seq)
            index.install(trig)
            fresh[row.id] = trig
            if row.backfilled < row.version:
                unevaluated.add(row.id)
            else:
                unevaluated.discard(row.id)

    def needs_backfill(self, trig: CompiledTrigger, *, at_startup: bool) -> bool:
        """At start-up only versions nobody evaluated yet; while running, every new version
        (this worker may have committed signals without knowing it)."""
        if not at_startup:
            return True
        return trig.id in self.unevaluated


def _compile(row: TriggerRow | StoredTrigger, registry: LeafClassRegistry) -> CompiledTrigger:
    """From the stored compact form, or from the definition when a row has none.

    Migration 2 fills the column for rows stored before it existed; a future change of
    the compact format must likewise come with a migration that rewrites the column.
    """
    compiled = getattr(row, "compiled", None)
    if compiled:
        return compile_compact(row.id, row.version, compiled, registry)
    definition = row.definition
    if definition is None:
        raise ValueError(f"trigger {row.id}: no stored definition to compile")
    if isinstance(definition, str):
        definition = json.loads(definition)
    return compile_trigger(definition, row.version, registry)
