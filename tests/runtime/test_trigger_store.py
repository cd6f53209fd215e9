"""Stored triggers as a worker loads them: compact forms, paging, the migration that
adds them, and rows without one; on both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from runtime.apply import apply_definitions
from runtime.store import schema
from runtime.store.sql import SqlStore
from runtime.triggerset import TriggerSet
from tests.harness import join_defs
from triggers import (
    CompiledTrigger,
    LeafClassRegistry,
    Matcher,
    compact_form,
    compile_trigger,
)

pytestmark = pytest.mark.integration


def _shape(t: CompiledTrigger) -> tuple[object, ...]:
    return (t.id, t.version, t.workflow, t.step, t.params, t.tree, t.join,
            [(x.label, x.alias, x.path, x.lc.key) for x in t.leaves])


async def test_pages_stream_every_change_in_revision_order(db_url: str) -> None:
    store = SqlStore(db_url)
    await store.open()
    try:
        await apply_definitions(store, join_defs(25))
        pages = [p async for p in store.trigger_pages(0, page=10)]
        assert [len(p) for p in pages] == [10, 10, 5]
        revs = [r.revision for p in pages for r in p]
        assert revs == sorted(revs) and len(set(revs)) == 25
        assert all(r.compiled and r.definition is None for p in pages for r in p)

        ts = TriggerSet(Matcher())
        installed, n = await ts.load(store)
        assert n == 25 and len(installed) == 25 and ts.revision == max(revs)
        want = {d.id: compile_trigger(d.canonical(), 1, LeafClassRegistry()) for d in join_defs(25)}
        for t in installed:
            assert _shape(t) == _shape(want[t.id])

        await apply_definitions(store, join_defs(3, version=2)[:3])
        installed, n = await ts.load(store)
        assert n == 3 and {t.id: t.version for t in installed} == {"t000": 2, "t001": 2, "t002": 2}
        assert ts.matcher.index.triggers["t000"].params == {"v": 2}
        assert len(ts.matcher.index) == 25
    finally:
        await store.close()


async def test_migration_fills_compact_forms_of_stored_rows(db_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # a database as flagman left it before migration 2: no ``compiled`` column
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    store = SqlStore(db_url)
    await store.open()
    defs = join_defs(4)
    try:
        async with store.transaction() as tx:
            await tx.c.execute(text("ALTER TABLE triggers DROP COLUMN compiled"))
            await tx.c.execute(
                text("INSERT INTO triggers (id, version, digest, definition, active, revision, "
                     "applied_ms, min_seq, backfilled) VALUES (:i, 1, 'd', :def, :a, :r, 0, 1, 0)"),
                [{"i": d.id, "def": json.dumps(d.canonical(), sort_keys=True), "a": True, "r": n + 1}
                 for n, d in enumerate(defs)],
            )
    finally:
        await store.close()
    monkeypatch.undo()

    store = SqlStore(db_url)
    await store.open()
    try:
        async with store.transaction() as tx:
            rows = (await tx.c.execute(text("SELECT id, compiled FROM triggers"))).fetchall()
            assert {r[0]: r[1] for r in rows} == {d.id: compact_form(d.canonical()) for d in defs}
            (version,) = (await tx.c.execute(
                text("SELECT value FROM flagman_meta WHERE key = 'schema_version'"))).one()
            assert int(version) == len(schema.MIGRATIONS)
            # a row without a compact form still loads, from its definition
            await tx.c.execute(text("UPDATE triggers SET compiled = NULL WHERE id = 't001'"))
        ts = TriggerSet(Matcher())
        installed, _ = await ts.load(store)
        want = {d.id: compile_trigger(d.canonical(), 1, LeafClassRegistry()) for d in defs}
        assert sorted(t.id for t in installed) == sorted(want)
        for t in installed:
            assert _shape(t) == _shape(want[t.id])
    finally:
        await store.close()


async def test_mark_backfilled_only_raises(db_url: str) -> None:
    store = SqlStore(db_url)
    await store.open()
    try:
        await apply_definitions(store, join_defs(5))
        await store.mark_backfilled({"t000": 1, "t001": 1, "t004": 1, "nope": 3})
        await store.mark_backfilled({"t000": 0})
        await store.mark_backfilled({})
        pages = [p async for p in store.trigger_pages(0)]
        got = {r.id: r.backfilled for p in pages for r in p}
        assert got == {"t000": 1, "t001": 1, "t002": 0, "t003": 0, "t004": 1}
    finally:
        await store.close()
