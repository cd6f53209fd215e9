"""The batch retry and constraint errors, on both databases: a constraint that refuses
a batch once is retried from the stored state; one that refuses it every time stops
the worker instead of wedging it. Also the direct SQLite path's guard against a batch
body that suspends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from runtime.store.base import FiringRow, StoreError
from runtime.worker import CONSTRAINT_RETRIES, Worker
from tests.harness import offline_worker

pytestmark = pytest.mark.integration


def _firing(command_id: str) -> FiringRow:
    return FiringRow(command_id, "trig", 1, '["d"]', 0, 1, None, "{}", "wf", "s", 0, 0, 0, 0)


@pytest_asyncio.fixture
async def w(db_url: str) -> AsyncIterator[Worker]:
    """A worker with its store open (no broker: only ``_with_retry`` is used)."""
    async with offline_worker(db_url, bootstrap="127.0.0.1:9", signal_topics="s",
                              command_topic="c", dlq_topic="d") as worker:
        yield worker


async def test_a_constraint_refusing_every_attempt_stops_the_worker(w: Worker) -> None:
    attempts = 0

    async def body(tx: Any) -> None:
        nonlocal attempts
        attempts += 1
        # one firing per (tuple, trigger, generation): the second row is refused
        await tx.insert_firings([_firing("a"), _firing("b")])

    with pytest.raises(StoreError) as err:
        await w._with_retry(body)
    assert err.value.constraint and err.value.transient
    assert attempts == CONSTRAINT_RETRIES


async def test_a_constraint_refusing_once_is_retried(w: Worker) -> None:
    attempts = 0

    async def body(tx: Any) -> str:
        nonlocal attempts
        attempts += 1
        rows = [_firing("a"), _firing("b")] if attempts <= 2 else [_firing("a")]
        await tx.insert_firings(rows)
        return "stored"

    assert await w._with_retry(body) == "stored"
    assert attempts == 3
    assert [p.command_id for p in await w.store.pending("s", [0])] == ["a"]


async def test_a_direct_sqlite_body_that_suspends_is_refused_and_rolled_back(
    tmp_path: Any,
) -> None:
    """On SQLite the batch body runs in the store's thread without an event loop
    (``_drive``): a body that awaits something other than the transaction's own
    methods must fail loudly, with its writes rolled back, not run half-way."""
    import asyncio

    from runtime.store.sql import SqlStore

    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/f.db")
    await store.open()

    async def suspends(tx: Any) -> None:
        await tx.insert_firings([_firing("a")])
        await asyncio.sleep(0)  # suspends: not allowed on the direct path

    async def stores(tx: Any) -> None:
        await tx.insert_firings([_firing("b")])

    try:
        with pytest.raises(RuntimeError, match="awaited something that suspends"):
            await store.run_batch(suspends)
        assert await store.pending("s", [0]) == []  # rolled back
        await store.run_batch(stores)  # the connection is usable afterwards
        assert [p.command_id for p in await store.pending("s", [0])] == ["b"]
    finally:
        await store.close()
