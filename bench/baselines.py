"""Baselines over the same records, so flagman's numbers read as ratios.

* raw: aiokafka ``getmany`` + ``json.loads`` of every value, nothing else: the ceiling
  of any Python consumer of this topic on this machine;
* faust: a faust-streaming agent taking batches of 1000 (``stream.take``) and parsing
  each value, in its own process (``bench/faust_app.py``).

* pipe: the latency floor. ``bench/pipe.py`` in the worker's place copies each record
  to an output topic with the worker's client settings; the records are produced at the
  latency run's rate by the same producer and timed by the same collector.

The first two count from the first delivered batch to the last record, and the rate leaves the
first batch out: ``(N - first_batch) / (t_last - t_first)``, so neither start-up nor
group joins are in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime.broker import ensure_topics

from .clients import Collector, produce
from .e2e import percentile
from .workload import Record

ROOT = Path(__file__).resolve().parent.parent


async def run_raw(bootstrap: str, topic: str, n: int, *, batch: int = 5000) -> dict[str, Any]:
    """Consume ``n`` records of ``topic`` from its start with aiokafka and parse them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = parsed = first_batch = 0
        first = last = 0.0
        loads = json.loads
        deadline = time.monotonic() + 300
        while seen < n and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500, max_records=batch)
            for recs in got.values():
                for rec in recs:
                    try:
                        loads(rec.value)
                        parsed += 1
                    except ValueError:
                        pass
                if not first:
                    first, first_batch = time.time(), len(recs)
                seen += len(recs)
            last = time.time()
    finally:
        await consumer.stop()
    return _result("raw aiokafka getmany + json.loads", seen, parsed, first, first_batch, last, n)


def _result(name: str, seen: int, parsed: int, first: float, first_batch: int, last: float,
            n: int) -> dict[str, Any]:
    secs = last - first
    rate = (seen - first_batch) / secs if secs > 0 else 0.0
    return {"name": name, "records": seen, "parsed": parsed, "expected": n,
            "complete": seen >= n, "seconds": round(secs, 3), "records_per_s": round(rate, 1)}


async def run_faust(bootstrap: str, topic: str, n: int, work: Path,
                    timeout: float = 300.0) -> dict[str, Any]:
    """Run the faust agent in a child process until it has consumed ``n`` records."""
    out = work / f"faust-{uuid.uuid4().hex[:8]}.json"
    app_id = f"flagman-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_FAUST_BOOTSTRAP": bootstrap, "BENCH_FAUST_TOPIC": topic,
           "BENCH_FAUST_N": str(n), "BENCH_FAUST_OUT": str(out), "BENCH_FAUST_ID": app_id,
           "PYTHONPATH": str(ROOT)}
    log = (work / "faust.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.faust_app", "--datadir", str(work / "faust-data"),
         "worker", "-l", "warn"],
        env=env, stdout=log, stderr=log, cwd=work, start_new_session=True,
    )
    log.close()
    started = time.time()
    try:
        while not out.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"faust exited with {proc.returncode}; see {work / 'faust.log'}")
            if time.time() - started > timeout:
                raise RuntimeError(f"faust did not consume {n} records in {timeout:g}s")
            await asyncio.sleep(0.2)
        r = json.loads(out.read_text())
    finally:
        _stop(proc)
    res = _result("faust-streaming agent, take(1000, within=1)", r["records"], r["parsed"],
                  r["first_ts"], r["first_batch"], r["last_ts"], n)
    res["startup_to_first_batch_s"] = round(r["first_ts"] - started, 2)
    return res


async def run_pipe(bootstrap: str, records: list[Record], rate: float, work: Path, *,
                   fetch_wait_ms: int, timeout: float = 120.0) -> dict[str, Any]:
    """Latency of ``bench/pipe.py`` at ``rate``: record timestamp (set when produced) to
    arrival at the collector, for every record copied."""
    u = uuid.uuid4().hex[:8]
    src, dst = f"bench.{u}.pipe-in", f"bench.{u}.pipe-out"
    await ensure_topics(bootstrap, {src: 3, dst: 3})
    log = (work / "pipe.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.pipe", bootstrap, src, dst, f"bench-pipe-{u}",
         str(fetch_wait_ms)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=log,
        start_new_session=True,
    )
    log.close()
    collector = Collector(bootstrap, dst, keep_stamps=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        if line.strip() != b"assigned":
            raise RuntimeError(f"pipe did not start; see {work / 'pipe.log'}")
        collector.start()
        cpu0 = _cpu(proc.pid)
        produced = await asyncio.to_thread(produce, bootstrap, src, records, rate=rate)
        secs = produced.last_ts - produced.first_ts
        cpu = _cpu(proc.pid) - cpu0
        deadline = time.time() + timeout
        while collector.count() < len(records) and time.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        _stop(proc)
        collector.stop()
    lat = sorted(arrived * 1000 - ts for ts, arrived in collector.stamps)
    return {"name": "pass-through pipe (broker floor)", "records": len(records),
            "copied": len(lat), "complete": len(lat) >= len(records),
            "offered_rate": round(len(records) / max(secs, 1e-9), 1), "target_rate": rate,
            **{f"p{p}_ms": percentile(lat, p) for p in (50, 95, 99)}, "max_ms": round(lat[-1], 1) if lat else None,
            "pipe_cpu_util": round(cpu / max(secs, 1e-9), 2)}


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
