"""The worker in-process against the real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from runtime.config import load_config
from runtime.worker import GC_THRESHOLDS, Worker
from tests.conftest import Topics
from tests.harness import (
    apply_yaml,
    command_ids,
    offline_worker,
    produce,
    read_topic,
    sig,
    wait_until,
)
from triggers import command_id

pytestmark = pytest.mark.integration

PAIR = """
- id: pair
  workflow: wf
  step: go
  when:
    all:
      - {signal: table_ready, as: orders, where: {table: db.orders}}
      - {signal: table_ready, where: {table: db.refunds}}
  join: [dt]
  params:
    run_date: "{dt}"
    rows: "{orders.payload.rows}"
    fixed: 3
"""


class Running:
    """A worker task plus the broker and topics it uses."""

    def __init__(self, bootstrap: str, db: str, topics: Topics) -> None:
        self.bootstrap, self.db, self.topics = bootstrap, db, topics
        self.worker: Worker | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, **overrides: Any) -> Worker:
        cfg = load_config(**{
            "bootstrap": self.bootstrap, "db": self.db, "signal_topics": self.topics.signals,
            "command_topic": self.topics.commands, "dlq_topic": self.topics.dlq,
            "group": self.topics.group, "session_timeout_ms": 3000, "reload_interval_s": 0.2,
            "fetch_wait_ms": 50, **overrides,
        })
        self.worker = Worker(cfg)
        self.task = asyncio.create_task(self.worker.run())
        await asyncio.wait_for(self.worker.assigned_once.wait(), 60)
        return self.worker

    async def stop(self) -> None:
        if self.worker and self.task:
            self.worker.stop()
            await asyncio.wait_for(self.task, 60)

    async def ids(self) -> list[str]:
        return await command_ids(self.bootstrap, self.topics.commands)

    async def wait_ids(self, expected: set[str], timeout: float = 30) -> list[str]:
        async def ok() -> bool:
            return set(await self.ids()) >= expected

        await wait_until(ok, timeout=timeout, what=f"commands {sorted(expected)}")
        return await self.ids()

    async def commands(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in await read_topic(self.bootstrap, self.topics.commands)]


@pytest_asyncio.fixture
async def running(kafka_bootstrap: str, db_url: str, topics: Topics) -> AsyncIterator[Running]:
    r = Running(kafka_bootstrap, db_url, topics)
    yield r
    await r.stop()


async def test_fires_once_with_lineage_and_rendered_params(running: Running) -> None:
    await apply_yaml(running.db, PAIR)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        await running.start()
        assert gc.get_threshold() == GC_THRESHOLDS  # the worker process's collector
    finally:
        gc.set_threshold(*before)
    b, t = running.bootstrap, running.topics.signals
    await produce(b, t, [sig("table_ready", {"table": "db.orders", "dt": "2026-11-25"},
                             id="o1", payload={"rows": 120331}, time="2026-11-25T06:02:11Z")])
    await produce(b, t, [sig("table_ready", {"table": "db.refunds", "dt": "2026-11-25"}, id="r1")])
    cid = command_id("pair", {"dt": "2026-11-25"}, 0)
    await running.wait_ids({cid})
    # a second orders signal for the fired tuple: recorded, nothing issued (on_update: ignore)
    await produce(b, t, [sig("table_ready", {"table": "db.orders", "dt": "2026-11-25"}, id="o2"),
                         sig("table_ready", {"table": "db.refunds", "dt": "2026-11-26"}, id="r2"),
                         sig("table_ready", {"table": "db.orders", "dt": "2026-11-26"}, id="o3")])
    await running.wait_ids({cid, command_id("pair", {"dt": "2026-11-26"}, 0)})
    cmds = await running.commands()
    assert len(cmds) == 2
    first = next(c for c in cmds if c["command_id"] == cid)
    assert first["type"] == "start_step"
    assert first["trigger"] == {"id": "pair", "version": 1}
    assert first["workflow"] == "wf" and first["step"] == "go"
    assert first["params"] == {"run_date": "2026-11-25", "rows": "120331", "fixed": 3}
    assert first["join"] == {"dt": "2026-11-25"} and first["generation"] == 0
    orders = next(s for s in first["signals"] if s["leaf"] == "orders")
    assert orders["id"] == "o1" and orders["time"] == "2026-11-25T06:02:11Z"
    assert orders["topic"] == running.topics.signals and orders["offset"] == 0
    assert len(first["command_id"]) == 64


async def test_bad_records_go_to_dlq_byte_for_byte(running: Running) -> None:
    await apply_yaml(running.db, PAIR)
    await running.start()
    bad = [
        (b"k1", b"\xff\xfenot utf-8", [("h", b"\x00\x01")]),
        (None, b"{\"name\": \"table_ready\"}", []),
        (b"k3", b"[]", [("trace", b"abc")]),
    ]
    good = sig("table_ready", {"table": "db.orders", "dt": "d"}, id="o")
    await produce(running.bootstrap, running.topics.signals, [*bad, good], partition=0)

    async def three() -> bool:
        return len(await read_topic(running.bootstrap, running.topics.dlq)) >= 3

    await wait_until(three, what="dead letters")
    dlq = await read_topic(running.bootstrap, running.topics.dlq)
    assert len(dlq) == 3
    for rec, (key, value, headers) in zip(sorted(dlq, key=lambda r: int(dict(r.headers)["flagman-source-offset"])), bad, strict=True):
        h = dict(rec.headers)
        assert rec.key == key and rec.value == value
        for name, v in headers:
            assert h[name] == v
        assert h["flagman-source-topic"] == running.topics.signals.encode()
        assert h["flagman-source-partition"] == b"0"
        assert b"\n" not in h["flagman-error"]
    errors = [dict(r.headers)["flagman-error"].decode() for r in dlq]
    assert any("params" in e for e in errors), errors
    # the valid record after them was processed: the worker kept going
    assert running.worker is not None

    async def stored() -> bool:
        assert running.worker is not None
        return running.worker.metrics.snapshot().get("signals", 0) >= 1

    await wait_until(stored, what="the valid signal")


async def test_duplicates_change_nothing_and_are_counted(running: Running) -> None:
    await apply_yaml(running.db, """
- id: each
  workflow: wf
  when: {signal: model_published}
""")
    w = await running.start()
    recs = [sig("model_published", {"m": "a"}, id="x"), sig("model_published", {"m": "CHANGED"}, id="x"),
            sig("model_published", {"m": "b"}), sig("model_published", {"m": "b"})]
    await produce(running.bootstrap, running.topics.signals, recs)
    want = {command_id("each", None, 0), command_id("each", None, 1)}
    ids = await running.wait_ids(want)
    assert sorted(ids) == sorted(want)
    assert w.metrics.snapshot()["duplicates"] == 2


async def test_trigger_applied_while_running_takes_effect_and_looks_back(running: Running) -> None:
    await apply_yaml(running.db, PAIR)
    await running.start()
    b, t = running.bootstrap, running.topics.signals
    await produce(b, t, [sig("table_ready", {"table": "db.users", "dt": "d1"}, id="u1")])

    async def stored() -> bool:
        assert running.worker is not None
        return running.worker.metrics.snapshot().get("signals", 0) >= 1

    await wait_until(stored, what="the users signal stored")
    await apply_yaml(running.db, PAIR + """
- id: users
  workflow: wf_users
  when: {signal: table_ready, where: {table: db.users}}
  join: [dt]
""")
    # the signal that arrived before the trigger counts (look-back), without a restart
    await running.wait_ids({command_id("users", {"dt": "d1"}, 0)})
    await produce(b, t, [sig("table_ready", {"table": "db.users", "dt": "d2"}, id="u2")])
    await running.wait_ids({command_id("users", {"dt": "d1"}, 0), command_id("users", {"dt": "d2"}, 0)})


async def test_refire_and_cloudevents_binary(running: Running) -> None:
    await apply_yaml(running.db, """
- id: model.deploy
  workflow: deploy
  when: {signal: model.published, as: m, where: {stage: production}}
  join: [model]
  on_update: refire
  params: {version: "{m.version}"}
""")
    await running.start()
    ce = [("ce_specversion", b"1.0"), ("ce_type", b"model.published"), ("ce_source", b"ml/registry"),
          ("ce_id", b"ev-1"), ("content-type", b"application/json")]
    structured = json.dumps({"specversion": "1.0", "type": "model.published", "source": "ml/registry",
                             "id": "ev-2", "data": {"model": "churn", "stage": "production", "version": 8}}).encode()
    await produce(running.bootstrap, running.topics.signals, [
        (None, json.dumps({"model": "churn", "stage": "production", "version": 7}).encode(), ce),
    ])
    await running.wait_ids({command_id("model.deploy", {"model": "churn"}, 0)})
    await produce(running.bootstrap, running.topics.signals, [structured, structured])
    ids = await running.wait_ids({command_id("model.deploy", {"model": "churn"}, g) for g in (0, 1)})
    assert len(ids) == 2
    cmds = await running.commands()
    assert sorted(c["params"]["version"] for c in cmds) == ["7", "8"]


async def test_batch_of_only_stored_duplicates(running: Running) -> None:
    """A batch whose every signal is already stored (a replay) inserts nothing, fires nothing."""
    await apply_yaml(running.db, PAIR)
    w = await running.start()
    one = sig("table_ready", {"table": "db.orders", "dt": "d"}, id="o")
    await produce(running.bootstrap, running.topics.signals, [one], partition=0)

    async def stored(n: int) -> bool:
        snap = w.metrics.snapshot()
        return snap.get("signals", 0) + snap.get("duplicates", 0) >= n

    await wait_until(lambda: stored(1), what="first copy")
    await produce(running.bootstrap, running.topics.signals, [one], partition=0)
    await wait_until(lambda: stored(2), what="second copy")
    assert w.metrics.snapshot() == {**w.metrics.snapshot(), "signals": 1, "duplicates": 1}
    assert await running.ids() == []


async def test_evicted_tuples_are_reloaded_from_the_store(running: Running) -> None:
    """With room for only 100 tuples in memory, 300 tuples completed long after their
    first part still fire exactly once each."""
    await apply_yaml(running.db, PAIR)
    w = await running.start(state_max_tuples=100, batch_max=50)
    days = [f"2026-{m:02d}-{d:02d}" for m in range(1, 11) for d in range(1, 31)]
    await produce(running.bootstrap, running.topics.signals,
                  [sig("table_ready", {"table": "db.orders", "dt": d}) for d in days])

    async def first_half() -> bool:
        return w.metrics.snapshot().get("signals", 0) >= len(days)

    await wait_until(first_half, what="the orders signals")
    assert len(w.state.tuples) <= 100
    await produce(running.bootstrap, running.topics.signals,
                  [sig("table_ready", {"table": "db.refunds", "dt": d}) for d in days])
    want = {command_id("pair", {"dt": d}, 0) for d in days}
    ids = await running.wait_ids(want, timeout=60)
    assert sorted(ids) == sorted(want)


async def test_explain_says_what_is_missing_and_what_fired(running: Running) -> None:
    from runtime.explain import explain

    await apply_yaml(running.db, PAIR)
    w = await running.start()
    await produce(running.bootstrap, running.topics.signals, [
        sig("table_ready", {"table": "db.orders", "dt": "d1"}, id="o1"),
        sig("table_ready", {"table": "db.refunds"}, id="no-dt"),
    ])

    async def stored() -> bool:
        return w.metrics.snapshot().get("signals", 0) >= 2

    await wait_until(stored, what="both signals")
    text = "\n".join(await explain(w.store, "pair", {"dt": "d1"}))
    assert "✓ orders: o1" in text
    assert "✗ table_ready(table=db.refunds)" in text
    assert "lack the join param 'dt'" in text
    assert "waiting: needs table_ready(table=db.refunds)" in text
    await produce(running.bootstrap, running.topics.signals,
                  [sig("table_ready", {"table": "db.refunds", "dt": "d1"}, id="r1")])
    await running.wait_ids({command_id("pair", {"dt": "d1"}, 0)})
    text = "\n".join(await explain(w.store, "pair", {"dt": "d1"}))
    assert "fired generation 0: command " + command_id("pair", {"dt": "d1"}, 0) in text
    assert "not applied" in "\n".join(await explain(w.store, "nope", {}))


async def test_the_sqlite_batch_connection_takes_the_configured_cache(tmp_path: Any) -> None:
    """``FLAGMAN_SQLITE_CACHE_MIB`` sizes the page cache of the connection that stores
    batches; the other connections keep the default."""
    from sqlalchemy import text

    from runtime.config import SQLITE_CACHE_MIB

    async def cache_size(tx: Any) -> int:
        return int((await tx._q("PRAGMA cache_size"))[0][0])

    async with offline_worker(f"sqlite+aiosqlite:///{tmp_path}/c.db", sqlite_cache_mib=7) as w:
        assert await w.store.run_batch(cache_size) == -7 * 1024  # KiB, as SQLite takes it
        async with w.store.engine.connect() as conn:
            got = (await conn.execute(text("PRAGMA cache_size"))).scalar()
            assert got == -SQLITE_CACHE_MIB * 1024


async def test_a_batch_s_cyclic_garbage_is_collected_not_frozen(tmp_path: Any) -> None:
    """Each batch ends with a young collection, then ``gc.freeze()``: a cycle the batch
    made and dropped is freed there. (Frozen first, it would stay for good: with the
    worker's thresholds no automatic collection runs inside a batch.)"""
    import weakref

    from bench.inproc import FakeProducer
    from runtime.worker import configure_gc

    made: list[weakref.ref[Any]] = []

    class Node:
        me: Any = None

    before = gc.get_threshold()
    async with offline_worker(f"sqlite+aiosqlite:///{tmp_path}/g.db") as w:
        w._producer = FakeProducer()  # type: ignore[assignment]
        prepare = w._prepare

        def prepare_making_a_cycle(batch: Any) -> Any:
            node = Node()
            node.me = node
            made.append(weakref.ref(node))
            return prepare(batch)

        w._prepare = prepare_making_a_cycle  # type: ignore[method-assign]
        configure_gc()
        try:
            await w.take({})
            assert made and made[0]() is None
        finally:
            gc.set_threshold(*before)
            gc.unfreeze()
