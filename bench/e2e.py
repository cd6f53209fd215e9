"""End to end: throughput and latency of a ``flagman worker`` process on a real broker.

One worker, one fresh database, fresh topics (3 partitions each). Triggers are loaded,
the worker is started and waited for (partitions assigned), then:

* throughput: every record of ``days`` days is produced as fast as the producer goes;
  the rate is records / (arrival of the last expected command - first send). The run
  then waits for the worker to commit every offset, drains the command topic and checks
  that the command ids are exactly the generator's expected set (no missing, no extra,
  no duplicate) and that every malformed record reached the dead-letter topic.
* latency: records of the following days at a fixed rate; for each command, arrival
  time at a separate consumer minus the send time of the last signal it binds (the one
  that completed it). Checked against the expected set of what was sent, too.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.broker import ensure_topics
from runtime.kafka_compat import read_to_end

from .clients import Collector, committed, produce
from .db import BenchDb, load_triggers
from .proc import WorkerProcess
from .profile import PySpy
from .workload import Record, Workload, landed_of

PARTITIONS = 3


@dataclass
class Stream:
    """The throughput phase's records and the command ids they must produce."""

    records: list[Record]
    expected: set[str]
    generate_s: float

    @classmethod
    def of(cls, wl: Workload) -> Stream:
        t = time.perf_counter()
        records = wl.records(range(wl.cfg.days))
        expected = wl.expected(landed_of(records))
        return cls(records, expected, time.perf_counter() - t)


async def run_e2e(wl: Workload, stream: Stream, db_kind: str, bootstrap: str, work: Path, *,
                  rate: float,
                  latency_seconds: float, pg_admin: str, api_sample: int = 1000,
                  profile: bool = False, skip_latency: bool = False,
                  worker_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Throughput, then latency, against one worker on ``db_kind`` (sqlite | postgresql)."""
    db = BenchDb(db_kind, work, pg_admin)
    url = await db.create()
    u = uuid.uuid4().hex[:8]
    topics = {"signals": f"bench.{u}.signals", "commands": f"bench.{u}.commands",
              "dlq": f"bench.{u}.dlq", "group": f"bench-{u}"}
    worker = WorkerProcess(bootstrap, url, topics, work / f"worker-{db_kind}-{u}.log",
                           extra_env=worker_env)
    out: dict[str, Any] = {"db": db_kind, "worker_log": str(worker.log_path)}
    try:
        await ensure_topics(bootstrap, {topics[k]: PARTITIONS for k in ("signals", "commands", "dlq")})
        out["load"] = await load_triggers(url, wl, api_sample=api_sample)
        worker.start()
        out["startup_ready_s"] = round(await worker.wait_ready(), 3)
        out["startup_assigned_s"] = round(await worker.wait_assigned(), 3)
        out["rss_ready_mib"] = round(worker.rss_mib(), 1)
        spy = work / f"profile-{db_kind}-{u}" if profile else None
        out["throughput"] = await _throughput(stream, worker, bootstrap, topics, spy)
        if not skip_latency:
            out["latency"] = await _latency(wl, worker, bootstrap, topics, rate, latency_seconds,
                                            out["throughput"].pop("command_ends"), spy)
        out["rss_end_mib"] = round(worker.rss_mib(), 1)
    finally:
        await worker.stop()
        out["worker_metrics"] = next(
            (e for e in reversed(worker.events()) if e.get("event") == "worker stopped"), {})
        out["worker_metrics"] = {k: v for k, v in out["worker_metrics"].items()
                                 if k in ("signals", "duplicates", "dead_lettered", "commands",
                                          "batches")}
        await db.drop()
    return out


async def _throughput(stream: Stream, worker: WorkerProcess, bootstrap: str,
                      topics: dict[str, str], spy: Path | None) -> dict[str, Any]:
    records, expected = stream.records, stream.expected
    collector = Collector(bootstrap, topics["commands"])
    collector.start()
    profiler = PySpy(worker.pid, spy.with_suffix(".throughput.txt")) if spy else None
    cpu0 = worker.cpu_seconds()
    produced = await asyncio.to_thread(produce, bootstrap, topics["signals"], records)
    last = await _await_expected(collector, expected, since=produced.last_ts)
    elapsed = last - produced.first_ts
    drained = await _await_committed(bootstrap, topics, produced.ends)
    cpu = worker.cpu_seconds() - cpu0
    prof = profiler.stop() if profiler else None
    await _await_idle(collector)
    collector.stop()
    check = _check(collector.arrivals, expected)
    dlq = await read_to_end(bootstrap, topics["dlq"], timeout=120)
    n_bad = sum(1 for r in records if r.table < 0)
    unique = len({r.sig_id for r in records if r.sig_id})
    return {
        "records": len(records), "unique_signals": unique, "malformed": n_bad,
        "duplicates": len(records) - unique - n_bad, "expected_commands": len(expected),
        "generate_s": round(stream.generate_s, 1), "produce_s": round(produced.last_ts - produced.first_ts, 2),
        "seconds": round(elapsed, 2), "records_per_s": round(len(records) / elapsed, 1),
        "unique_signals_per_s": round(unique / elapsed, 1),
        "commands_per_s": round(len(expected) / elapsed, 1),
        "all_committed_s": round(drained - produced.first_ts, 2),
        "worker_cpu_s": round(cpu, 1), "worker_cpu_util": round(cpu / max(elapsed, 1e-9), 2),
        **check, "dlq_records": len(dlq), "dlq_exact": len(dlq) == n_bad,
        "exact": check["exact"] and len(dlq) == n_bad,
        "command_ends": collector.ends, **({"profile": prof} if prof else {}),
    }


async def _latency(wl: Workload, worker: WorkerProcess, bootstrap: str, topics: dict[str, str],
                   rate: float, seconds: float, start: dict[int, int],
                   spy: Path | None) -> dict[str, Any]:
    n = max(1, int(rate * seconds))
    per_day = max(1, int(wl.cfg.tables * (1 - wl.cfg.missing_rate)))
    first = wl.cfg.days
    records: list[Record] = wl.records(range(first, first + math.ceil(n / per_day) + 1))[:n]
    expected = wl.expected(landed_of(records))
    collector = Collector(bootstrap, topics["commands"], keep_values=True, start=start)
    collector.start()
    profiler = PySpy(worker.pid, spy.with_suffix(".latency.txt")) if spy else None
    cpu0 = worker.cpu_seconds()
    produced = await asyncio.to_thread(produce, bootstrap, topics["signals"], records,
                                       rate=rate, keep_times=True)
    prof = profiler.stop() if profiler else None
    offered = len(records) / max(produced.last_ts - produced.first_ts, 1e-9)
    await _await_expected(collector, expected, since=produced.last_ts)
    await _await_committed(bootstrap, topics, produced.ends)
    cpu = worker.cpu_seconds() - cpu0
    await _await_idle(collector)
    collector.stop()
    lat = []
    for value, arrived in collector.values:
        cmd = json.loads(value)
        if cmd["command_id"] not in expected:
            continue  # an earlier phase's command
        sent = max(produced.sent_at[s["id"]] for s in cmd["signals"])
        lat.append((arrived - sent) * 1000)
    lat.sort()
    arrivals = [(c, t) for c, t in collector.arrivals if c in expected]
    return {
        "records": len(records), "offered_rate": round(offered, 1), "target_rate": rate,
        "expected_commands": len(expected), "commands_measured": len(lat),
        "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
        "max_ms": round(lat[-1], 1) if lat else None,
        "worker_cpu_util": round(cpu / max(produced.last_ts - produced.first_ts, 1e-9), 2),
        **_check(arrivals, expected), **({"profile": prof} if prof else {}),
    }


def percentile(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    i = min(len(sorted_ms) - 1, max(0, math.ceil(p / 100 * len(sorted_ms)) - 1))
    return round(sorted_ms[i], 1)


def _check(arrivals: list[tuple[str, float]], expected: set[str]) -> dict[str, Any]:
    counts = Counter(c for c, _ in arrivals)
    got = set(counts)
    dups = sum(n - 1 for n in counts.values() if n > 1)
    missing, extra = len(expected - got), len(got - expected)
    return {"commands": len(arrivals), "missing": missing, "extra": extra,
            "duplicate_commands": dups, "exact": not (missing or extra or dups)}


async def _await_expected(collector: Collector, expected: set[str], *, since: float,
                          stall_s: float = 120.0) -> float:
    """Wait until every expected id arrived; return the arrival time of the last one.
    Gives up when nothing new arrives for ``stall_s`` after production ended."""
    remaining = set(expected)
    last = 0.0
    i = 0
    progress = time.time()
    while remaining:
        with collector.lock:
            new = collector.arrivals[i:]
        i += len(new)
        for cid, t in new:
            if cid in remaining:
                remaining.discard(cid)
                last = max(last, t)
        if new:
            progress = time.time()
        elif time.time() - max(progress, since) > stall_s:
            break  # reported as missing by the check
        await asyncio.sleep(0.02)
    return last


async def _await_committed(bootstrap: str, topics: dict[str, str], ends: dict[int, int],
                           timeout: float = 300.0) -> float:
    """Wait for the worker's group to commit up to ``ends``; return when it had."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = await asyncio.to_thread(committed, bootstrap, topics["group"], topics["signals"],
                                      sorted(ends))
        if all(got.get(p, -1) >= e for p, e in ends.items()):
            return time.time()
        await asyncio.sleep(0.25)
    raise RuntimeError(f"worker did not commit all offsets within {timeout:g}s")


async def _await_idle(collector: Collector, quiet_s: float = 1.5) -> None:
    """Commands are on the topic before offsets are committed: drain what is left."""
    while time.time() - max(collector.last_arrival, 0) < quiet_s:
        await asyncio.sleep(0.1)
