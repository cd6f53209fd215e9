"""The worker's live trigger set: stored rows compiled into the matcher's index."""

from __future__ import annotations

from dataclasses import dataclass, field

from triggers import CompiledTrigger, Matcher, compile_trigger

from .store.base import TriggerRow


@dataclass(slots=True)
class TriggerSet:
    """Keeps the matcher's index in step with the ``triggers`` table by revision."""

    matcher: Matcher
    revision: int = 0
    backfilled: dict[str, int] = field(default_factory=dict)

    def absorb(self, rows: list[TriggerRow]) -> list[CompiledTrigger]:
        """Install/replace/remove triggers from stored rows (ordered by revision).

        Returns the installed triggers whose look-back has not been evaluated for this
        version (by this or any worker), i.e. those needing a backfill.
        """
        index = self.matcher.index
        fresh: dict[str, CompiledTrigger] = {}
        for row in rows:
            self.revision = max(self.revision, row.revision)
            if not row.active:
                index.remove(row.id)
                fresh.pop(row.id, None)
                continue
            current = index.triggers.get(row.id)
            if current is not None and current.version == row.version:
                continue
            trig = compile_trigger(row.definition, row.version, index.registry)
            # seqs start at 1: a horizon of 1 excludes nothing, and 0 keeps the hot path
            trig.min_seq = row.min_seq if row.min_seq > 1 else 0
            index.install(trig)
            fresh[row.id] = trig
            self.backfilled[row.id] = row.backfilled
        return list(fresh.values())

    def needs_backfill(self, trig: CompiledTrigger, *, at_startup: bool) -> bool:
        """At start-up only versions nobody evaluated yet; while running, every new version
        (this worker may have committed signals without knowing it)."""
        if not at_startup:
            return True
        return self.backfilled.get(trig.id, 0) < trig.version
