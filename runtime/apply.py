"""``flagman apply``: validate trigger files, store new versions, print the diff.

Validation happens entirely before the database is touched: one bad trigger anywhere
and nothing is stored. Storing is one transaction (under an advisory lock on
PostgreSQL) that bumps the trigger revision; running workers poll it and install the
new versions within ``reload_interval_s``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from triggers import TriggerDef, compact_form, diff_definitions, load_paths

from .store.sql import SqlStore


@dataclass
class ApplyReport:
    """What an apply did (or, with ``dry_run``, would do)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    changes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = field(
        default_factory=list
    )
    versions: dict[str, int] = field(default_factory=dict)

    def diffs(self, limit: int | None = 100) -> list[str]:
        """Unified diffs of the changed triggers; past ``limit`` one summary line."""
        shown = self.changes if limit is None else self.changes[:limit]
        out = [diff_definitions(old, new, tid) for tid, old, new in shown]
        if len(shown) < len(self.changes):
            out.append(f"... and {len(self.changes) - len(shown)} more changed triggers "
                       "(--full-diff shows all)")
        return out

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.pruned)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.pruned)} pruned"
        )


async def apply_definitions(
    store: SqlStore,
    defs: Sequence[TriggerDef],
    *,
    prune: bool = False,
    dry_run: bool = False,
    now_ms: int | None = None,
) -> ApplyReport:
    """Store validated definitions; see the module docstring."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    report = ApplyReport()
    async with store.transaction(commit=not dry_run) as tx:
        conn = tx.c
        if dry_run:
            # The database may be older than this flagman, or empty. Migrated here,
            # inside the transaction the dry run rolls back, it reads in today's layout
            # and is left exactly as it was.
            await store.migrate_on(conn)
        if store.is_postgres:
            await conn.execute(text("SELECT pg_advisory_xact_lock(7243002)"))
        rows = await conn.execute(text("SELECT id, version, digest, definition, active FROM triggers"))
        current = {r[0]: (r[1], r[2], json.loads(r[3]), bool(r[4])) for r in rows.fetchall()}
        (max_seq,) = (await conn.execute(text("SELECT coalesce(max(seq), 0) FROM signals"))).one()
        (rev,) = (await conn.execute(text("SELECT coalesce(max(revision), 0) FROM triggers"))).one()
        changes: list[tuple[str, int, str, dict[str, Any] | None, bool, str]] = []
        wanted = set()
        for d in defs:
            wanted.add(d.id)
            canon: dict[str, Any] = d.canonical(copy_nested=False)
            digest = d.digest()
            old = current.get(d.id)
            if old is not None and old[1] == digest and old[3]:
                report.unchanged.append(d.id)
                report.versions[d.id] = old[0]
                continue
            version = 1 if old is None else old[0] + 1
            (report.created if old is None or not old[3] else report.updated).append(d.id)
            report.changes.append((d.id, old[2] if old and old[3] else None, canon))
            report.versions[d.id] = version
            changes.append((d.id, version, digest, canon, True, "created" if old is None else "updated"))
        if prune:
            for tid, (version, old_digest, old_canon, active) in sorted(current.items()):
                if active and tid not in wanted:
                    report.pruned.append(tid)
                    report.changes.append((tid, old_canon, None))
                    changes.append((tid, version + 1, old_digest, old_canon, False, "pruned"))
        if dry_run or not changes:
            return report  # nothing kept: a dry run's transaction is rolled back
        horizons: dict[int, int] = {}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for tid, version, digest, stored, active, action in changes:
            rev += 1
            assert stored is not None
            lookback = int(stored.get("lookback_s", 604800))
            if lookback not in horizons:
                horizons[lookback] = await _horizon(conn, lookback, now, max_seq)
            params = {
                "i": tid, "v": version, "d": digest, "def": json.dumps(stored, sort_keys=True),
                "a": active, "r": rev, "t": now, "m": horizons[lookback], "act": action,
                "c": compact_form(stored),
            }
            (updates if tid in current else inserts).append(params)
            history.append(params)
        if updates:
            await conn.execute(
                text(
                    "UPDATE triggers SET version = :v, digest = :d, definition = :def, "
                    "active = :a, revision = :r, applied_ms = :t, min_seq = :m, compiled = :c "
                    "WHERE id = :i"
                ),
                updates,
            )
        if inserts:
            await conn.execute(
                text(
                    "INSERT INTO triggers (id, version, digest, definition, active, revision, "
                    "applied_ms, min_seq, backfilled, compiled) "
                    "VALUES (:i, :v, :d, :def, :a, :r, :t, :m, 0, :c)"
                ),
                inserts,
            )
        await conn.execute(
            text(
                "INSERT INTO trigger_versions (id, version, digest, definition, action, applied_ms) "
                "VALUES (:i, :v, :d, :def, :act, :t)"
            ),
            history,
        )
    return report


async def _horizon(conn: Any, lookback_s: int, now_ms: int, max_seq: int) -> int:
    """The first signal seq inside the look-back window (``max_seq + 1`` when none is)."""
    if lookback_s <= 0:
        return int(max_seq) + 1
    row = (
        await conn.execute(
            text("SELECT min(seq) FROM signals WHERE record_ts_ms >= :t"),
            {"t": now_ms - lookback_s * 1000},
        )
    ).one()
    return int(row[0]) if row[0] is not None else int(max_seq) + 1


def load(paths: Sequence[str | Path]) -> list[TriggerDef]:
    """Validate trigger files (raises ``triggers.DefinitionError`` listing every problem)."""
    return load_paths(paths)
