"""Fault 2: the broker unreachable.

* Mid-stream, the broker process is frozen (SIGSTOP) for 15 s (short form: 6 s), then
  thawed (SIGCONT). Clients see a hung broker, not a dead one: connections stay open
  and requests go unanswered. The worker must stay alive without spinning (CPU and log
  volume during the pause are measured), resume by itself, and give exactly the
  expected commands, none twice.
* The worker started while the broker is down: it must wait, retry with backoff and say
  so in a clear log line, then start working once the broker appears. "Down" is either
  nothing listening on the port (connection refused) or a frozen broker (hung).

Each test runs its own broker, so freezing it does not disturb other tests.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from runtime.broker import EmbeddedBroker
from tests.conftest import Topics
from tests.faults._support import (
    BAD_RECORDS,
    JoinWorkload,
    PortBroker,
    assert_alive,
    committed_offsets,
    cpu_seconds,
    dlq_by_position,
    ends_of,
    epoch_ms,
    events,
    free_port,
    produce_at,
    report,
    uniq_signal,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import apply_yaml, command_ids, wait_until
from triggers import command_id

pytestmark = pytest.mark.integration

LONG = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.parametrize(
    ("pause_s", "size", "backend"),
    [
        pytest.param(6.0, (40, 100, 20), "sqlite", id="short-sqlite"),
        pytest.param(15.0, (300, 600, 40), "sqlite", id="long-sqlite", marks=LONG),
        pytest.param(15.0, (300, 600, 40), "postgresql", id="long-postgresql", marks=LONG),
    ],
)
async def test_broker_frozen_mid_stream(
    pause_s: float, size: tuple[int, int, int], backend: str, make_db: MakeDb,
    make_worker: MakeWorker, topics: Topics, tmp_path: Path,
) -> None:
    db = await make_db(backend)
    wl = JoinWorkload(*size, seed=3)
    await apply_yaml(db, wl.yaml())
    records, expected = wl.records(), wl.expected()
    half = len(records) // 2
    async with EmbeddedBroker(log_dir=tmp_path) as broker:
        bootstrap = broker.bootstrap
        env = {**topics.env(), "FLAGMAN_BATCH_MAX": "25", "FLAGMAN_FETCH_WAIT_MS": "50",
               "FLAGMAN_LOG_LEVEL": "debug"}  # "command issued" lines are counted
        worker = make_worker(bootstrap, db, env)
        worker.start()
        await worker.wait_assigned()
        positions = await produce_at(bootstrap, topics.signals, records[:half])

        async def first_half_committed() -> bool:
            c = await committed_offsets(bootstrap, topics.group, topics.signals)
            return all(c.get(p, 0) >= e for p, e in ends_of(positions).items())

        await wait_until(first_half_committed, timeout=60, what="the first half committed")
        positions += await produce_at(bootstrap, topics.signals, records[half:])

        # The fault: the broker freezes while the worker works through the second half.
        assert worker.proc is not None
        pid = worker.proc.pid
        cpu0, lines0 = cpu_seconds(pid), len(worker.log_lines())
        broker.pause()
        issued_at_pause = len(events(worker, "command issued"))
        paused_at = time.monotonic()
        try:
            while time.monotonic() - paused_at < pause_s:
                assert worker.alive(), worker.log_path.read_text()[-3000:]
                await asyncio.sleep(0.5)
        finally:
            broker.resume()
        cpu_during = cpu_seconds(pid) - cpu0
        lines_during = len(worker.log_lines()) - lines0
        resumed_at = time.monotonic()

        bad = {pos for rec, pos in zip(records, positions, strict=True) if rec in BAD_RECORDS}
        await wait_complete(bootstrap, topics.commands, topics.group, topics.signals, expected,
                            ends_of(positions), timeout=180, alive=lambda: assert_alive(worker))
        recovered_s = time.monotonic() - resumed_at
        assert worker.terminate() == 0
        ids = await command_ids(bootstrap, topics.commands)
        dlq = await dlq_by_position(bootstrap, topics.dlq)
        issued_after = len(events(worker, "command issued")) - issued_at_pause

    warnings = sorted({e["event"] for e in worker.log_lines() if e.get("level") == "warning"})
    report("broker frozen mid-stream", backend=backend, pause_s=pause_s, records=len(records),
           expected=len(expected), commands=len(ids), missing=len(expected - set(ids)),
           duplicates=len(ids) - len(set(ids)), issued_after_pause=issued_after,
           worker_cpu_s_during_pause=round(cpu_during, 2),
           log_lines_during_pause=lines_during, recovered_in_s=round(recovered_s, 1),
           warnings=warnings)
    assert set(ids) == expected
    assert len(ids) == len(set(ids)), "a command_id reached the topic twice"
    assert set(dlq) == bad
    assert issued_after > 0, "the pause must land while commands were still to come"
    assert cpu_during < 0.25 * pause_s, f"the worker spun while the broker was frozen: {cpu_during:.1f}s CPU"
    assert lines_during < 10 * pause_s, f"log flood while the broker was frozen: {lines_during} lines"


@pytest.mark.parametrize(
    ("down", "down_s"),
    [
        pytest.param("refused", 6.0, id="short-refused"),
        pytest.param("refused", 30.0, id="long-refused", marks=LONG),
        pytest.param("hung", 60.0, id="long-hung", marks=LONG),
    ],
)
async def test_worker_started_while_broker_down(
    down: str, down_s: float, make_db: MakeDb, make_worker: MakeWorker, topics: Topics,
    tmp_path: Path,
) -> None:
    """Start-up against a broker that is not there yet: wait, retry with backoff, log it."""
    db = await make_db("sqlite")
    await apply_yaml(db, "- id: each\n  workflow: wf\n  when: {signal: s}\n  join: [n]\n")
    frozen: EmbeddedBroker | None = None
    if down == "refused":
        broker = PortBroker(free_port(), tmp_path)
        bootstrap = broker.bootstrap
    else:
        frozen = EmbeddedBroker(log_dir=tmp_path)
        await frozen.start()
        frozen.pause()
        bootstrap = frozen.bootstrap
    worker = make_worker(bootstrap, db, topics.env())
    try:
        worker.start()
        assert worker.proc is not None
        started, started_wall = time.monotonic(), time.time()
        while time.monotonic() - started < down_s:  # the outage itself
            assert worker.alive(), "the worker must wait for the broker, not exit:\n" + \
                worker.log_path.read_text()[-3000:]
            await asyncio.sleep(0.5)
        cpu = cpu_seconds(worker.proc.pid)
        retries = events(worker, "broker unreachable, retrying")
        assert retries, "no 'broker unreachable, retrying' log line while the broker was down"
        delays = [float(e["retry_in_s"]) for e in retries]
        first_line_s = epoch_ms(retries[0]["timestamp"]) / 1000 - started_wall
        assert all(e.get("bootstrap") == bootstrap and e.get("error") for e in retries)
        assert delays == sorted(delays) and (len(delays) < 3 or delays[-1] > delays[0]), delays

        if frozen is not None:
            frozen.resume()
        else:
            await broker.start()
        up = time.monotonic()
        await worker.wait_assigned(timeout=90)
        ready_s = time.monotonic() - up
        await produce_at(bootstrap, topics.signals, [uniq_signal(n) for n in range(20)])
        expected = {command_id("each", {"n": n}, 0) for n in range(20)}

        async def done() -> bool:
            return set(await command_ids(bootstrap, topics.commands)) >= expected

        await wait_until(done, timeout=60, what="the commands")
        assert worker.terminate() == 0
        ids = await command_ids(bootstrap, topics.commands)
        report("worker started while broker down", down=down, down_s=down_s,
               retry_lines=len(retries), retry_in_s=delays, first_line_after_s=round(first_line_s, 1), worker_cpu_s=round(cpu, 2),
               ready_after_broker_up_s=round(ready_s, 1), commands=len(ids),
               duplicates=len(ids) - len(set(ids)))
        assert sorted(ids) == sorted(expected)
        assert cpu < 0.25 * down_s + 3, f"the worker spun while waiting: {cpu:.1f}s CPU"
    finally:
        if worker.alive():
            worker.kill9()
        if frozen is not None:
            await frozen.stop()
        else:
            await broker.stop()
