"""The worker's batch pipeline in-process, without a broker: where the CPU goes.

``python -m bench.inproc --triggers 20000 --days 3 [--db sqlite|postgresql] [--cprofile]``
loads a generated workload's triggers into a fresh database, then feeds its records to
``Worker.process`` in fetch-sized batches. Kafka is replaced by a producer that only
collects what would be sent and an offset commit that does nothing, so the number is
the cost of parsing, matching, storing and rendering commands: an upper bound for the
end-to-end rate, and the loop to profile when changing the hot path. The commands
collected are checked against the generator's expected set, as the end-to-end run does.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition

from runtime.config import WorkerConfig
from runtime.logs import configure
from runtime.worker import CMD_HEADER, Worker, configure_gc

from .db import BenchDb, load_triggers
from .workload import Workload, WorkloadConfig, landed_of


class FakeProducer:
    """Accepts sends and acknowledges them at once, keeping the command ids."""

    def __init__(self) -> None:
        self.command_ids: list[str] = []
        self.offsets: dict[tuple[str, int], int] = {}

    def _meta(self, topic: str, partition: int) -> Any:
        off = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = off + 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), off,
                                      -1, -1, 0))
        return fut

    async def send(self, topic: str, value: Any = None, key: Any = None, partition: int = 0,
                   headers: Any = None, **_: Any) -> Any:
        for k, v in headers or ():
            if k == CMD_HEADER:
                self.command_ids.append(v.decode())
        return self._meta(topic, partition or 0)

    def create_batch(self) -> Any:
        return _FakeBatch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.command_ids.extend(batch.command_ids)
        fut = self._meta(topic, partition)
        self.offsets[(topic, partition)] += len(batch.command_ids) - 1
        return fut


class _FakeBatch:
    def __init__(self) -> None:
        self.command_ids: list[str] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any) -> Any:
        if len(self.command_ids) >= 1000:
            return None
        for k, v in headers:
            if k == CMD_HEADER:
                self.command_ids.append(v.decode())
        return True


def _time_statements(acc: dict[str, list[float]]) -> None:
    """Time every driver-level statement of the store, by its first words; on the
    direct SQLite path (``_DirectTx``) also each transaction as a whole and its body
    (statements and the Python between them; the rest is BEGIN and COMMIT)."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from runtime.store import sql as store_sql

    def clock(key: str, t: float) -> None:
        n_t = acc.setdefault(key, [0.0, 0.0])
        n_t[0] += 1
        n_t[1] += time.perf_counter() - t

    orig = AsyncConnection.exec_driver_sql

    async def timed(self: Any, sql: str, params: Any = None, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await orig(self, sql, params, **kw)
        finally:
            clock(" ".join(sql.split()[:4])[:60], t)

    AsyncConnection.exec_driver_sql = timed  # type: ignore[method-assign,assignment]

    def wrap(name: str) -> None:
        orig_m = getattr(store_sql._DirectTx, name)

        async def timed_m(self: Any, sql: str, params: Any = ()) -> Any:
            t = time.perf_counter()
            try:
                return await orig_m(self, sql, params)
            finally:
                clock(" ".join(sql.split()[:4])[:60], t)

        setattr(store_sql._DirectTx, name, timed_m)

    wrap("_q")
    wrap("_many")
    orig_run = store_sql.SqlStore._run_direct

    def timed_run(self: Any, body: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig_run(self, body)
        finally:
            clock("direct tx (total)", t)

    store_sql.SqlStore._run_direct = timed_run  # type: ignore[method-assign]
    orig_drive = store_sql._drive

    def timed_drive(coro: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig_drive(coro)
        finally:
            clock("direct tx body (statements and Python)", t)

    store_sql._drive = timed_drive


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wl = Workload(WorkloadConfig(triggers=args.triggers, tables=args.triggers, days=args.days,
                                 seed=args.seed))
    records = wl.records(range(args.days))
    expected = wl.expected(landed_of(records))
    work = Path(tempfile.mkdtemp(prefix="flagman-inproc-"))
    db = BenchDb(args.db, work)
    url = await db.create()
    try:
        t0 = time.perf_counter()
        await load_triggers(url, wl)
        cfg = WorkerConfig(db=url, signal_topics="sig", command_topic="cmd", dlq_topic="dlq")
        w = Worker(cfg)
        await w._open_store()
        await w._load_triggers(at_startup=True)
        load_s = time.perf_counter() - t0
        prod = FakeProducer()
        w._producer = prod
        w._cmd_partitions = [0, 1, 2]

        async def no_commit(offsets: Any) -> None:
            return None

        w._commit = no_commit  # type: ignore[method-assign]
        parts = 3
        by_part: list[list[ConsumerRecord[bytes, bytes]]] = [[] for _ in range(parts)]
        for i, r in enumerate(records):
            p = i % parts
            by_part[p].append(ConsumerRecord("sig", p, len(by_part[p]), 1_700_000_000_000 + i, 0,
                                             r.key, r.value, None, len(r.key), len(r.value), []))
        batches = []
        per = max(args.batch // parts, 1)
        for start in range(0, max(len(b) for b in by_part), per):
            batches.append({TopicPartition("sig", p): by_part[p][start : start + per]
                            for p in range(parts) if by_part[p][start : start + per]})
        sql_time: dict[str, list[float]] = {}
        if args.sqltime:
            _time_statements(sql_time)
        gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc_t0 = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_t0[0] = time.perf_counter()
            else:
                gc_pauses[info["generation"]].append(time.perf_counter() - gc_t0[0])

        gc.callbacks.append(on_gc)
        if args.gc_threshold:
            gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
        else:
            configure_gc()  # as Worker.run does
        prof = cProfile.Profile() if args.cprofile else None
        gc.collect()
        t1 = time.perf_counter()
        cpu1 = time.process_time()
        if prof:
            prof.enable()
        for b in batches:
            await w.take(b)
        await w._settle()
        if w._to_mark:
            await w.store.mark_published(w._to_mark)
        if prof:
            prof.disable()
        dt = time.perf_counter() - t1
        gc.callbacks.remove(on_gc)
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        cyclic_garbage = gc.collect()  # what freezing kept from the collector, if anything
        cpu = time.process_time() - cpu1
        await w.store.close()
    finally:
        if args.keep:
            print(f"database kept: {url}")
        else:
            await db.drop()
    got = prod.command_ids
    for k, (n, t) in sorted(sql_time.items(), key=lambda kv: -kv[1][1]):
        print(f"{t:8.3f} s {int(n):6d}x  {k}")
    out = {
        "db": args.db, "triggers": args.triggers, "records": len(records), "batches": len(batches),
        "load_s": round(load_s, 1), "seconds": round(dt, 2), "cpu_s": round(cpu, 2),
        "records_per_s": round(len(records) / dt), "us_per_record": round(dt / len(records) * 1e6, 1),
        "commands": len(got), "exact": set(got) == expected and len(got) == len(set(got)),
        "frozen": frozen, "cyclic_garbage_at_end": cyclic_garbage,
        "gc": {g: {"n": len(v), "s": round(sum(v), 3), "max_ms": round(max(v, default=0) * 1e3, 1)}
               for g, v in gc_pauses.items()},
    }
    if prof:
        stats = pstats.Stats(prof)
        stats.sort_stats(args.sort).print_stats(args.top)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__)
    ap.add_argument("--triggers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--sqltime", action="store_true", help="time statements by kind")
    ap.add_argument("--gc-threshold", default="", help="gc.set_threshold values instead of the worker's, e.g. 700,10,10")
    ap.add_argument("--keep", action="store_true", help="keep the database (and print its URL)")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=35)
    args = ap.parse_args()
    configure("info", "json")  # as the worker runs in production; stderr holds the lines
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
