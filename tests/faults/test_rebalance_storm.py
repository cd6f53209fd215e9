"""Fault 4: a rebalance storm. Workers of one group (up to 3, PostgreSQL store) join
and leave every few seconds while the stream flows: most leave cleanly (SIGTERM), some
are killed (SIGKILL). Afterwards: exactly the expected commands, none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from tests.conftest import Topics
from tests.faults._support import (
    BAD_RECORDS,
    JoinWorkload,
    dlq_by_position,
    ends_of,
    events,
    produce_at,
    report,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import WorkerProc, apply_yaml, command_ids, wait_until

pytestmark = pytest.mark.integration

SLOTS = 3


@pytest.mark.parametrize(
    ("storm_s", "size"),
    [
        pytest.param(20.0, (60, 150, 20), id="short"),
        pytest.param(240.0, (400, 800, 60), id="long",
                     marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
    ],
)
async def test_rebalance_storm_exact_commands(
    storm_s: float, size: tuple[int, int, int], kafka_bootstrap: str, make_db: MakeDb,
    make_worker: MakeWorker,
    topics: Topics, tmp_path: Path,
) -> None:
    db = await make_db("postgresql")
    wl = JoinWorkload(*size, seed=4)
    await apply_yaml(db, wl.yaml())
    records, expected = wl.records(), wl.expected()
    env = {**topics.env(), "FLAGMAN_BATCH_MAX": "50", "FLAGMAN_FETCH_WAIT_MS": "50",
           "FLAGMAN_LOG_LEVEL": "debug"}  # "command issued" lines are counted
    workers = [make_worker(kafka_bootstrap, db, env, f"w{i}") for i in range(SLOTS)]
    rnd = random.Random(8)
    joins, clean_leaves, kills, exits = 0, 0, 0, []
    positions: list[tuple[int, int]] = []
    started = time.monotonic()

    async def stream() -> None:
        # The stream flows for the whole storm, in steady chunks.
        n = max(1, int(storm_s / 0.5))
        step = -(-len(records) // n)
        for i in range(0, len(records), step):
            positions.extend(await produce_at(kafka_bootstrap, topics.signals, records[i:i + step]))
            await asyncio.sleep(storm_s / n)

    workers[0].start()
    workers[1].start()
    joins = 2
    await workers[0].wait_assigned()
    producer = asyncio.create_task(stream())
    try:
        while time.monotonic() - started < storm_s:
            # The storm itself: the next membership change comes a few seconds later.
            await asyncio.sleep(rnd.uniform(1.5, 4.0))
            alive = [w for w in workers if w.alive()]
            idle = [w for w in workers if not w.alive()]
            if idle and (len(alive) <= 1 or rnd.random() < 0.5):
                rnd.choice(idle).start()
                joins += 1
            elif alive:
                w = rnd.choice(alive)
                if rnd.random() < 0.7:
                    exits.append(await asyncio.to_thread(w.terminate))
                    clean_leaves += 1
                else:
                    # SIGKILL only in a settled group, and let it settle again after:
                    # the embedded broker (tansu 0.6) can leave a group rebalancing
                    # forever when membership changes while a dead member is still on
                    # its books (see docs/reliability.md).
                    await wait_until(lambda: _settled(workers), timeout=90,
                                     what="the group to settle before a kill")
                    w.kill9()
                    kills += 1
                    await wait_until(lambda: _settled(workers), timeout=90,
                                     what="the group to settle after a kill")
        await producer
    finally:
        if not producer.done():
            producer.cancel()
    if not any(w.alive() for w in workers):
        workers[0].start()
        joins += 1

    def alive() -> None:
        assert any(w.alive() for w in workers), "no worker left"

    await wait_complete(kafka_bootstrap, topics.commands, topics.group, topics.signals, expected,
                        ends_of(positions), timeout=300, alive=alive)
    for w in workers:
        if w.alive():
            exits.append(await asyncio.to_thread(w.terminate))
    ids = await command_ids(kafka_bootstrap, topics.commands)
    dlq = await dlq_by_position(kafka_bootstrap, topics.dlq)
    bad = {pos for rec, pos in zip(records, positions, strict=True) if rec in BAD_RECORDS}
    assignments = sum(len(events(w, "partitions assigned")) for w in workers)
    issued_by = [len(events(w, "command issued")) for w in workers]
    report("rebalance storm", store="postgresql", storm_s=storm_s, records=len(records),
           triggers=wl.triggers, joins=joins, clean_leaves=clean_leaves, kills=kills,
           assignments=assignments, commands_by_slot=issued_by, expected=len(expected),
           commands=len(ids), missing=len(expected - set(ids)),
           duplicates=len(ids) - len(set(ids)), seconds=round(time.monotonic() - started, 1))
    assert set(ids) == expected
    assert len(ids) == len(set(ids)), "a command_id reached the topic twice"
    assert set(dlq) == bad
    assert all(code == 0 for code in exits), f"a worker did not leave cleanly: {exits}"
    assert joins + clean_leaves + kills >= storm_s / 5, "the storm was too calm"


async def _settled(workers: list[WorkerProc]) -> bool:
    """Every live worker holds its latest assignment, and together they hold every
    partition once."""
    alive = [w for w in workers if w.alive()]
    held: list[str] = []
    known: set[str] = set()
    for w in workers:
        known |= {p for e in events(w, "partitions assigned") for p in e["partitions"]}
    for w in alive:
        last = [e for e in w.log_lines() if e.get("event") in ("partitions assigned", "partitions revoked")]
        if not last or last[-1]["event"] != "partitions assigned":
            return False
        held += last[-1]["partitions"]
    return bool(alive) and len(held) == len(set(held)) and set(held) == known


async def test_sigterm_while_a_rebalance_is_held_up_stops_the_worker_promptly(
    kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics
) -> None:
    """A rebalance can take long: another member may be slow to give its partitions up
    (a batch stuck on the database, a slow callback). A worker asked to stop meanwhile
    must stop, not wait for the group to settle and take an assignment first."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener

    from runtime.broker import ensure_topics

    db = await make_db("sqlite")
    await apply_yaml(db, "- id: each\n  workflow: wf\n  when: {signal: s}\n  join: [n]\n")
    await ensure_topics(kafka_bootstrap, {topics.signals: 3, topics.commands: 3, topics.dlq: 3})
    holding, release, assigned = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class SlowToRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: object) -> None:
            if revoked:
                holding.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), 60)

        async def on_partitions_assigned(self, got: object) -> None:
            assigned.set()

    other = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=topics.group,
                             session_timeout_ms=10000, heartbeat_interval_ms=1000,
                             max_poll_interval_ms=90000, enable_auto_commit=False)
    await other.start()
    other.subscribe([topics.signals], listener=SlowToRevoke())

    async def drive() -> None:
        while True:
            with contextlib.suppress(KafkaError):
                await other.getmany(timeout_ms=200)

    driver = asyncio.create_task(drive())
    worker = make_worker(kafka_bootstrap, db, topics.env())
    try:
        await asyncio.wait_for(assigned.wait(), 60)
        worker.start()
        await asyncio.wait_for(holding.wait(), 60)  # the worker's join is now held up

        async def joining() -> bool:
            return bool(events(worker, "worker ready"))

        await wait_until(joining, timeout=60, what="the worker to be ready and joining")
        assert worker.proc is not None
        asked = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(worker.proc.wait, 10)
        except subprocess.TimeoutExpired:
            code = None
        waited = time.monotonic() - asked
    finally:
        release.set()
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
        await other.stop()
    report("sigterm during a held-up rebalance", exited=code, waited_s=round(waited, 1))
    assert code == 0, f"SIGTERM ignored for {waited:.0f}s while the group was rebalancing"
