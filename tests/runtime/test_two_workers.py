"""Two workers in one consumer group over PostgreSQL: same commands as one worker.

The two parts of each join tuple are sent to different partitions at the same moment,
so the two workers decide about the same tuple concurrently. Tuple locks and the
refresh under them must give exactly one command per tuple: none lost, none twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Topics
from tests.harness import WorkerProc, apply_yaml, command_ids, produce, sig, wait_until
from triggers import command_id

pytestmark = pytest.mark.integration

TRIGGERS = """
- id: both
  workflow: wf_both
  when:
    all:
      - {signal: table_ready, where: {table: a}}
      - {signal: table_ready, where: {table: b}}
  join: [dt]
- id: three
  workflow: wf_three
  when:
    all:
      - {signal: table_ready, where: {table: a}}
      - {signal: table_ready, where: {table: b}}
      - {signal: table_ready, where: {table: c}}
  join: [dt]
- id: rounds
  workflow: wf_rounds
  when:
    all:
      - {signal: ping, where: {side: left}}
      - {signal: ping, where: {side: right}}
"""

DAYS = 150


def latest_assignment(w: WorkerProc) -> list[str]:
    got = [e["partitions"] for e in w.log_lines() if e.get("event") == "partitions assigned"]
    return got[-1] if got else []


async def test_two_workers_concurrent_tuples_exact(
    kafka_bootstrap: str, pg_url: str, topics: Topics, tmp_path: Path
) -> None:
    await apply_yaml(pg_url, TRIGGERS)
    env = {**topics.env(), "FLAGMAN_BATCH_MAX": "50", "FLAGMAN_FETCH_WAIT_MS": "20"}
    workers = [WorkerProc(kafka_bootstrap, pg_url, env, tmp_path / f"w{i}.log") for i in range(2)]
    for w in workers:
        w.start()

    async def split() -> bool:
        for w in workers:
            assert w.alive(), w.log_path.read_text()[-2000:]
        a, b = (set(latest_assignment(w)) for w in workers)
        return bool(a) and bool(b) and not (a & b) and len(a | b) == 3

    await wait_until(split, timeout=90, what="the group to split the 3 partitions")

    per_partition: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for d in range(DAYS):
        dt = f"day-{d:03d}"
        for i, table in enumerate("abc"):
            if table == "c" and d % 2:
                continue  # 'three' fires on even days only
            per_partition[(d + i) % 3].append(sig("table_ready", {"table": table, "dt": dt}))
    for n in range(40):  # no-join rounds: 40 lefts and 40 rights on different partitions
        per_partition[n % 3].append(sig("ping", {"side": "left", "n": n}))
        per_partition[(n + 1) % 3].append(sig("ping", {"side": "right", "n": n}))
    await asyncio.gather(*(produce(kafka_bootstrap, topics.signals, recs, partition=p)
                           for p, recs in per_partition.items()))

    expected = {command_id("both", {"dt": f"day-{d:03d}"}, 0) for d in range(DAYS)}
    expected |= {command_id("three", {"dt": f"day-{d:03d}"}, 0) for d in range(0, DAYS, 2)}
    expected |= {command_id("rounds", None, n) for n in range(40)}

    async def done() -> bool:
        return set(await command_ids(kafka_bootstrap, topics.commands)) >= expected

    await wait_until(done, timeout=120, what="every expected command")
    for w in workers:
        assert w.terminate() == 0
    ids = await command_ids(kafka_bootstrap, topics.commands)
    assert set(ids) == expected
    assert len(ids) == len(expected), "a command was issued twice"
    issued_by = [
        sum(1 for e in w.log_lines() if e.get("event") == "command issued") for w in workers
    ]
    assert all(n > 0 for n in issued_by), f"both workers must have decided some tuples: {issued_by}"
