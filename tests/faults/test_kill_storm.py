"""Fault 1: the worker killed with SIGKILL at random points, again and again, mid-stream.

The stream is produced in chunks; after each chunk the worker is killed at a random
moment: sometimes before it has joined the group (start-up, recovery), mostly while it
works through the chunk. Afterwards the command topic must hold exactly the expected
command ids (plain set logic over the generated workload), none twice, and every
malformed record must be dead-lettered.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.conftest import Topics
from tests.faults._support import (
    BAD_RECORDS,
    JoinWorkload,
    assert_alive,
    committed_offsets,
    dlq_by_position,
    ends_of,
    firing_count,
    produce_at,
    report,
    unpublished_firings,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import apply_yaml, command_ids

pytestmark = pytest.mark.integration

LONG = [pytest.mark.slow, pytest.mark.timeout(1800)]
SHORT_SIZE = {"triggers": 60, "tables": 150, "days": 20, "kills": 6, "linger": 0.15}
LONG_SIZE = {"triggers": 1000, "tables": 2000, "days": 50, "kills": 24, "linger": 3.0}


@pytest.mark.parametrize(
    ("size", "backend"),
    [
        pytest.param(SHORT_SIZE, "sqlite", id="short-sqlite"),
        pytest.param(LONG_SIZE, "sqlite", id="long-sqlite", marks=LONG),
        pytest.param(LONG_SIZE, "postgresql", id="long-postgresql", marks=LONG),
    ],
)
async def test_sigkill_storm_exact_commands(
    size: dict[str, float], backend: str, kafka_bootstrap: str, make_db: MakeDb,
    make_worker: MakeWorker, topics: Topics,
) -> None:
    db = await make_db(backend)
    wl = JoinWorkload(int(size["triggers"]), int(size["tables"]), int(size["days"]), seed=11)
    await apply_yaml(db, wl.yaml())
    records, expected = wl.records(), wl.expected()
    kills = int(size["kills"])
    chunks = [records[i * len(records) // (kills + 1):(i + 1) * len(records) // (kills + 1)]
              for i in range(kills + 1)]
    env = {**topics.env(), "FLAGMAN_BATCH_MAX": "25" if kills < 10 else "200",
           "FLAGMAN_FETCH_WAIT_MS": "50"}
    worker = make_worker(kafka_bootstrap, db, env)
    rnd = random.Random(5)
    started = time.monotonic()

    positions: list[tuple[int, int]] = []
    bad_positions: set[tuple[int, int]] = set()
    backlog_at_kill: list[int] = []
    before_assignment = 0
    worker.start()
    for chunk in chunks[:-1]:
        early = rnd.random() < 0.2
        if not early:
            await worker.wait_assigned(timeout=90)
        at = await produce_at(kafka_bootstrap, topics.signals, chunk)
        positions += at
        bad_positions |= {pos for rec, pos in zip(chunk, at, strict=True) if rec in BAD_RECORDS}
        # The kill point is the fault itself: a random moment of start-up and recovery
        # (early), or of the work on the chunk just sent.
        await asyncio.sleep(rnd.uniform(0.2, 2.5) if early else rnd.uniform(0, size["linger"]))
        worker.kill9()
        before_assignment += early
        committed = await committed_offsets(kafka_bootstrap, topics.group, topics.signals)
        backlog_at_kill.append(sum(e - committed.get(p, 0) for p, e in ends_of(positions).items()))
        worker.start()
    at = await produce_at(kafka_bootstrap, topics.signals, chunks[-1])
    positions += at
    bad_positions |= {pos for rec, pos in zip(chunks[-1], at, strict=True) if rec in BAD_RECORDS}

    await wait_complete(kafka_bootstrap, topics.commands, topics.group, topics.signals, expected,
                        ends_of(positions), timeout=600 if kills > 10 else 120,
                        alive=lambda: assert_alive(worker))
    await worker.wait_assigned()
    assert worker.terminate() == 0, "SIGTERM must stop the worker cleanly"

    ids = await command_ids(kafka_bootstrap, topics.commands)
    dlq = await dlq_by_position(kafka_bootstrap, topics.dlq)
    duplicates = len(ids) - len(set(ids))
    report("sigkill storm", backend=backend, records=len(records), triggers=wl.triggers,
           kills=kills, killed_before_assignment=before_assignment,
           kills_with_backlog=sum(1 for b in backlog_at_kill if b > 0),
           backlog_at_kill=backlog_at_kill, expected=len(expected), commands=len(ids),
           missing=len(expected - set(ids)), unexpected=len(set(ids) - expected),
           duplicates=duplicates, dead_letters=len(bad_positions),
           dead_letter_copies=sum(len(v) for v in dlq.values()),
           seconds=round(time.monotonic() - started, 1))
    assert set(ids) == expected
    assert duplicates == 0, "a command_id reached the topic twice"
    assert set(dlq) == bad_positions, "each malformed record dead-lettered, and nothing else"
    assert await firing_count(db) == len(expected)
    assert await unpublished_firings(db) == 0, "after a clean stop every firing is marked published"
    assert sum(1 for b in backlog_at_kill if b > 0) >= kills // 2, "kills must land mid-stream"


