"""End to end: the worker as a process, killed with SIGKILL mid-stream, restarted.

The expected command set is computed here by plain set logic from the generated
signals, independently of the matcher.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Topics
from tests.harness import WorkerProc, apply_yaml, command_ids, produce, read_topic, sig, wait_until
from triggers import command_id

PAIRS = 8
DAYS = 12

TRIGGERS = "\n".join(
    [
        f"""
- id: e2e.pair.{k}
  workflow: wf_pair_{k}
  when:
    all:
      - signal: table_ready
        where: {{table: t{k}a}}
      - signal: table_ready
        where: {{table: t{k}b}}
  join: [dt]
"""
        for k in range(PAIRS)
    ]
    + [
        """
- id: e2e.two_of_three
  workflow: wf_two
  step: check
  when:
    at_least:
      count: 2
      of:
        - {signal: table_ready, where: {table: t0a}}
        - {signal: table_ready, where: {table: t1a}}
        - {signal: table_ready, where: {table: t2a}}
  join: [dt]
- id: e2e.each_model
  workflow: wf_models
  when: {signal: model_published}
"""
    ]
)


def workload(seed: int) -> tuple[list[Any], set[str], int]:
    """Records (with duplicates and malformed ones), expected command ids, malformed count."""
    rnd = random.Random(seed)
    present: set[tuple[str, str]] = set()
    records: list[Any] = []
    for d in range(DAYS):
        dt = f"2026-11-{d + 1:02d}"
        for k in range(PAIRS):
            for side in "ab":
                if rnd.random() < 0.85:
                    present.add((f"t{k}{side}", dt))
                    records.append(sig("table_ready", {"table": f"t{k}{side}", "dt": dt}))
    models = [sig("model_published", {"model": "churn", "version": v}, id=f"m{v}") for v in range(15)]
    records += models
    rnd.shuffle(records)
    dups = [rnd.choice(records) for _ in range(len(records) // 20)]
    bad: list[Any] = [b"\xff\xfe not utf8", b"{not json", b"[1,2]", sig("bad name!", {}),
                      json.dumps({"name": "x", "params": {"a": None}}).encode()]
    stream = records + dups + bad
    rnd.shuffle(stream)
    expected = set()
    for d in range(DAYS):
        dt = f"2026-11-{d + 1:02d}"
        for k in range(PAIRS):
            if (f"t{k}a", dt) in present and (f"t{k}b", dt) in present:
                expected.add(command_id(f"e2e.pair.{k}", {"dt": dt}, 0))
        if sum((f"t{k}a", dt) in present for k in range(3)) >= 2:
            expected.add(command_id("e2e.two_of_three", {"dt": dt}, 0))
    for n in range(len(models)):
        expected.add(command_id("e2e.each_model", None, n))
    return stream, expected, len(bad)


@pytest.mark.integration
async def test_kill9_mid_stream_gives_exactly_one_command_each(
    kafka_bootstrap: str, db_url: str, topics: Topics, tmp_path: Path
) -> None:
    await apply_yaml(db_url, TRIGGERS)
    stream, expected, n_bad = workload(seed=7)
    env = {**topics.env(), "FLAGMAN_BATCH_MAX": "25", "FLAGMAN_FETCH_WAIT_MS": "50"}
    worker = WorkerProc(kafka_bootstrap, db_url, env, tmp_path / "worker.log")
    worker.start()
    await worker.wait_assigned()

    chunks = [stream[i::4] for i in range(4)]
    kills = 0
    for chunk in chunks:
        before = len(await command_ids(kafka_bootstrap, topics.commands))
        await produce(kafka_bootstrap, topics.signals, chunk)

        async def progressed(before: int = before) -> bool:
            return len(await command_ids(kafka_bootstrap, topics.commands)) > before

        await wait_until(progressed, timeout=60, what="some commands from the chunk")
        worker.kill9()
        kills += 1
        worker.start()
    assert kills == 4

    async def complete() -> bool:
        return set(await command_ids(kafka_bootstrap, topics.commands)) >= expected

    await wait_until(complete, timeout=120, what="all expected commands")
    await worker.wait_assigned()
    assert worker.terminate() == 0, "SIGTERM must stop the worker cleanly with exit 0"

    ids = await command_ids(kafka_bootstrap, topics.commands)
    assert set(ids) == expected
    assert len(ids) == len(set(ids)), "a command_id reached the topic twice"
    for rec in await read_topic(kafka_bootstrap, topics.commands):
        body = json.loads(rec.value)
        assert dict(rec.headers)["flagman-command-id"].decode() == body["command_id"]
        assert rec.key == body["workflow"].encode()

    dlq = await read_topic(kafka_bootstrap, topics.dlq)
    positions = {
        (dict(r.headers)["flagman-source-partition"], dict(r.headers)["flagman-source-offset"])
        for r in dlq
    }
    assert len(positions) == n_bad, "every malformed record is dead-lettered (at least once)"
    assert all(dict(r.headers)["flagman-error"] for r in dlq)
