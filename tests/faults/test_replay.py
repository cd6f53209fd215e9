"""Fault 5: replay. After a stream has been processed, the group's offsets are reset to
the beginning (the worker stopped, offset 0 committed for every partition) and the
worker restarted: every record comes again, and no new command may appear.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Topics
from tests.faults._support import (
    JoinWorkload,
    committed_offsets,
    ends_of,
    events,
    produce_at,
    report,
    reset_group_to_beginning,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import apply_yaml, command_ids

pytestmark = pytest.mark.integration

LONG = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.mark.parametrize(
    ("size", "backend"),
    [
        pytest.param((40, 100, 16), "sqlite", id="short-sqlite"),
        pytest.param((1000, 2000, 50), "sqlite", id="long-sqlite", marks=LONG),
        pytest.param((1000, 2000, 50), "postgresql", id="long-postgresql", marks=LONG),
    ],
)
async def test_replay_from_the_beginning_issues_nothing_new(
    size: tuple[int, int, int], backend: str, kafka_bootstrap: str, make_db: MakeDb,
    make_worker: MakeWorker,
    topics: Topics, tmp_path: Path,
) -> None:
    db = await make_db(backend)
    wl = JoinWorkload(*size, seed=6)
    await apply_yaml(db, wl.yaml())
    records, expected = wl.records(), wl.expected()
    env = {**topics.env(), "FLAGMAN_BATCH_MAX": "500", "FLAGMAN_FETCH_WAIT_MS": "50"}
    worker = make_worker(kafka_bootstrap, db, env)
    worker.start()
    await worker.wait_assigned()
    ends = ends_of(await produce_at(kafka_bootstrap, topics.signals, records))
    await wait_complete(kafka_bootstrap, topics.commands, topics.group, topics.signals, expected,
                        ends, timeout=600)
    assert worker.terminate() == 0
    first = await command_ids(kafka_bootstrap, topics.commands)
    assert set(first) == expected and len(first) == len(expected)

    reset = await reset_group_to_beginning(kafka_bootstrap, topics.group, topics.signals)
    assert reset == sorted(ends)
    assert await committed_offsets(kafka_bootstrap, topics.group, topics.signals) == {p: 0 for p in reset}

    started = time.monotonic()
    worker.start()
    await worker.wait_assigned()
    await wait_complete(kafka_bootstrap, topics.commands, topics.group, topics.signals, expected,
                        ends, timeout=600)
    replay_s = time.monotonic() - started
    assert worker.terminate() == 0
    second = await command_ids(kafka_bootstrap, topics.commands)
    stats = events(worker, "worker stopped")[-1]
    report("replay from the beginning", backend=backend, records=len(records),
           expected=len(expected), commands_before=len(first), commands_after=len(second),
           new_command_ids=len(set(second) - set(first)), duplicates=len(second) - len(set(second)),
           replay_counted_duplicates=stats.get("duplicates", 0),
           replay_dead_lettered=stats.get("dead_lettered", 0),
           replay_commands=stats.get("commands", 0), replay_s=round(replay_s, 1))
    assert second == first, "the replay published something"
    assert stats.get("commands", 0) == 0
    assert stats.get("signals", 0) == 0, "a replayed signal was taken for a new one"
    assert stats.get("duplicates", 0) == len(records) - stats.get("dead_lettered", 0), \
        "every replayed valid record is counted a duplicate"
