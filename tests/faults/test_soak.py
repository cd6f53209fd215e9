"""Load: a soak at a steady rate. The long form is 10 minutes at 5,000 signals/s.

The stream looks like a busy warehouse: 200 tables land partitions for a moving window
of ``dt`` values (a new ``dt`` opens every 2 s; signals go to the 5 newest), re-runs
of a partition are new signals (explicit ids), 3% are re-sent duplicates and 0.1% are
malformed. 100 join triggers each wait for two tables on the same ``dt``. A second
shape churns through tuples (a new ``dt`` every 50 ms, signals over the 100 newest) with
the worker's in-memory state capped at 100 tuples, so tuples are evicted and reloaded
from the database all the time: memory must stay flat and the commands exact.

Measured, and held to:
* the worker's memory (RSS) is flat: the median of the last fifth within 10% of the
  median of the second fifth (the first is warm-up);
* no growth of unacked state: consumer lag (produced - committed) and stored firings not
  yet marked published stay bounded, the end no worse than the start;
* latency p50/p99 (signal time to command record time) reported for the start and end;
* afterwards, exactly the expected commands, none twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path

import pytest

from runtime.broker import EmbeddedBroker
from tests.conftest import Topics
from tests.faults._support import (
    MiB,
    Paced,
    assert_alive,
    commands,
    committed_offsets,
    cpu_seconds,
    epoch_ms,
    percentile,
    report,
    rss_bytes,
    unpublished_firings,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import apply_yaml
from triggers import command_id

pytestmark = pytest.mark.integration

TABLES = 200
TRIGGERS = 100


class Shape:
    """How the join tuples move: a new ``dt`` every ``dt_every_s``, signals spread over
    the ``window`` newest, and the worker's in-memory state capped at ``max_tuples``."""

    def __init__(self, dt_every_s: float, window: int, max_tuples: int | None = None) -> None:
        self.dt_every_s, self.window, self.max_tuples = dt_every_s, window, max_tuples


# A warehouse: a new day every 2 s, late partitions up to 5 days back.
STEADY = Shape(2.0, 5)
# Tuple churn: a new dt every 50 ms, signals over the 100 newest, and a state cap of
# 100 tuples: the worker evicts and reloads tuples all the time.
CHURN = Shape(0.05, 100, max_tuples=100)


class SoakStream:
    """Generates the stream tick by tick and keeps what the referee needs."""

    def __init__(self, shape: Shape, seed: int = 1) -> None:
        self.shape = shape
        self.rnd = random.Random(seed)
        pick = random.Random(f"{seed}:triggers")
        self.specs = [tuple(pick.sample(range(TABLES), 2)) for _ in range(TRIGGERS)]
        self.landed: dict[int, set[int]] = {}
        self.sent = 0
        self._recent: list[bytes] = []

    def yaml(self) -> str:
        return "".join(
            f"- id: soak.{i:03d}\n  workflow: wf{i % 10}\n  when: {{all: ["
            f"{{signal: table_ready, where: {{table: t{a:03d}}}}}, "
            f"{{signal: table_ready, where: {{table: t{b:03d}}}}}]}}\n  join: [dt]\n"
            for i, (a, b) in enumerate(self.specs)
        )

    def tick(self, n: int, elapsed_s: float) -> list[bytes]:
        newest = int(elapsed_s / self.shape.dt_every_s)
        out = []
        for _ in range(n):
            r = self.rnd.random()
            if r < 0.03 and self._recent:
                out.append(self.rnd.choice(self._recent))
                continue
            if r < 0.031:
                out.append(b'{"name": "table_ready", "params": {"table": null}}')
                continue
            d = max(0, newest - self.rnd.randrange(self.shape.window))
            t = self.rnd.randrange(TABLES)
            self.sent += 1
            rec = json.dumps({"name": "table_ready", "id": f"r{self.sent}",
                              "params": {"table": f"t{t:03d}", "dt": f"w{d:05d}"}},
                             separators=(",", ":")).encode()
            self.landed.setdefault(d, set()).add(t)
            out.append(rec)
            if len(self._recent) < 1000:
                self._recent.append(rec)
            else:
                self._recent[self.rnd.randrange(1000)] = rec
        return out

    def expected(self) -> set[str]:
        return {
            command_id(f"soak.{i:03d}", {"dt": f"w{d:05d}"}, 0)
            for i, (a, b) in enumerate(self.specs)
            for d, tabs in self.landed.items()
            if a in tabs and b in tabs
        }


@pytest.mark.parametrize(
    ("rate", "duration_s", "shape"),
    [
        pytest.param(1000, 15.0, STEADY, id="short-steady"),
        pytest.param(1000, 15.0, CHURN, id="short-churn"),
        pytest.param(5000, 600.0, STEADY, id="long-steady",
                     marks=[pytest.mark.slow, pytest.mark.timeout(2400)]),
        pytest.param(2000, 180.0, CHURN, id="long-churn",
                     marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
    ],
)
async def test_soak_steady_rate(
    rate: int, duration_s: float, shape: Shape, make_db: MakeDb, make_worker: MakeWorker,
    topics: Topics, tmp_path: Path,
) -> None:
    db = await make_db("sqlite")
    stream = SoakStream(shape)
    await apply_yaml(db, stream.yaml())
    async with EmbeddedBroker(log_dir=tmp_path) as broker:
        bootstrap = broker.bootstrap
        env = topics.env()
        if shape.max_tuples is not None:
            env["FLAGMAN_STATE_MAX_TUPLES"] = str(shape.max_tuples)
        # The cache of recent signals is bounded by design; keep it small enough to be
        # full before the first memory sample, so that growth after it means a leak.
        env["FLAGMAN_SIGNAL_CACHE_MAX"] = str(max(1000, rate))
        worker = make_worker(bootstrap, db, env)
        worker.start()
        await worker.wait_assigned()
        assert worker.proc is not None
        pid = worker.proc.pid
        samples: list[dict[str, float]] = []
        produced = 0
        ends: dict[int, int] = {}
        tick_s = 0.1
        started = time.monotonic()
        next_sample = started
        async with Paced(bootstrap) as out:
            while (elapsed := time.monotonic() - started) < duration_s:
                # The producer keeps the rate on average: a tick sends what is due by now.
                due = int(rate * elapsed) - produced
                if due > 0:
                    for part, off in await out.send(topics.signals, stream.tick(due, elapsed)):
                        ends[part] = max(ends.get(part, 0), off + 1)
                    produced += due
                if time.monotonic() >= next_sample:
                    next_sample += max(1.0, duration_s / 120)
                    committed = sum((await committed_offsets(bootstrap, topics.group, topics.signals)).values())
                    samples.append({
                        "t": elapsed, "rss": rss_bytes(pid), "cpu": cpu_seconds(pid),
                        "broker_cpu": cpu_seconds(broker.pid), "own_cpu": cpu_seconds(os.getpid()),
                        "lag": produced - committed,
                        "unpublished": await unpublished_firings(db),
                    })
                await asyncio.sleep(max(0.0, started + elapsed + tick_s - time.monotonic()))
        send_s = time.monotonic() - started
        expected = stream.expected()
        await wait_complete(bootstrap, topics.commands, topics.group, topics.signals, expected, ends,
                            timeout=max(120, duration_s), alive=lambda: assert_alive(worker))
        drain_s = time.monotonic() - started - send_s
        assert worker.terminate() == 0
        cmds = await commands(bootstrap, topics.commands)

    ids = [c["command_id"] for c in cmds]
    lat = [(c["_ts"], c["_ts"] - max(epoch_ms(s["time"]) for s in c["signals"])) for c in cmds]
    lat.sort()
    fifth = max(1, len(lat) // 5)
    lat_start = [v for _, v in lat[:fifth]]
    lat_end = [v for _, v in lat[-fifth:]]
    n = len(samples)
    second = samples[n // 5: 2 * n // 5] or samples[:1]
    last = samples[4 * n // 5:] or samples[-1:]
    rss_start = statistics.median(s["rss"] for s in second)
    rss_end = statistics.median(s["rss"] for s in last)
    lag_start = max(s["lag"] for s in second)
    lag_end = max(s["lag"] for s in last)
    unpub_end = max(s["unpublished"] for s in last)
    span = max(1e-9, samples[-1]["t"] - samples[0]["t"])
    cpu = {k: round((samples[-1][k] - samples[0][k]) / span, 2) for k in ("cpu", "broker_cpu", "own_cpu")}
    report("soak", store="sqlite", dt_every_s=shape.dt_every_s, window=shape.window,
           state_max_tuples=shape.max_tuples, tuples=len(stream.landed), rate=rate, seconds=duration_s, produced=produced,
           achieved_rate=round(produced / send_s), drain_after_stop_s=round(drain_s, 1),
           rss_mib_start=round(rss_start / MiB, 1), rss_mib_end=round(rss_end / MiB, 1),
           rss_growth_pct=round(100 * (rss_end - rss_start) / rss_start, 1),
           rss_mib_max=round(max(s["rss"] for s in samples) / MiB, 1),
           lag_max_start=lag_start, lag_max_end=lag_end,
           lag_max=max(s["lag"] for s in samples), unpublished_max_end=unpub_end,
           cpu_cores={"worker": cpu["cpu"], "broker": cpu["broker_cpu"], "producer": cpu["own_cpu"]},
           latency_ms_start={"p50": percentile(lat_start, 50), "p99": percentile(lat_start, 99)},
           latency_ms_end={"p50": percentile(lat_end, 50), "p99": percentile(lat_end, 99)},
           expected=len(expected), commands=len(ids), missing=len(expected - set(ids)),
           duplicates=len(ids) - len(set(ids)))
    assert set(ids) == expected
    assert len(ids) == len(set(ids)), "a command_id reached the topic twice"
    assert rss_end <= 1.10 * rss_start, f"memory grew {rss_start / MiB:.0f} -> {rss_end / MiB:.0f} MiB"
    slack = rate * 2  # two seconds of records in flight is not a backlog
    assert lag_end <= max(2 * lag_start, slack), f"the backlog grew: {lag_start} -> {lag_end}"
    assert unpub_end <= 5000, f"firings left unpublished: {unpub_end}"


