"""``python -m bench``: run the benchmark, print the table, write ``bench/results/latest.json``.

Parts (each can be skipped with ``--skip``, or chosen with ``--only``):

* ``matcher``   per-signal matching cost with 1k … 1M registered triggers (in-process);
* ``baselines`` raw aiokafka getmany + JSON, and a faust-streaming agent, same records;
* ``e2e``       worker throughput, exact command set, then latency at a fixed rate;
* ``pipe``      the latency floor: a pass-through process in the worker's place, same
  rate, producer and collector (``bench/pipe.py``);
* ``footprint`` worker RSS and start-up time with 100k and 1M triggers.

All on an embedded broker (tansu) unless ``--bootstrap`` is given, and SQLite unless
``--db postgresql`` or ``--both-dbs``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any

from runtime.broker import EmbeddedBroker, ensure_topics
from runtime.config import WorkerConfig
from runtime.kafka_compat import TANSU_FETCH_WAIT_MS

from . import report
from .baselines import run_faust, run_pipe, run_raw
from .clients import produce
from .db import PG_ADMIN_DEFAULT
from .e2e import Stream, run_e2e
from .footprint import run_footprint
from .matcher_scale import run_sizes
from .workload import Workload, WorkloadConfig

PARTS = ("matcher", "baselines", "faust", "e2e", "latency", "pipe", "footprint")


def _sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--triggers", type=int, default=100_000, help="triggers in the e2e run")
    p.add_argument("--tables", type=int, default=None, help="tables (default: = triggers)")
    p.add_argument("--signals", type=int, default=500_000,
                   help="at least this many distinct signals in the throughput run")
    p.add_argument("--days", type=int, default=None, help="days of partitions (overrides --signals)")
    p.add_argument("--rate", type=float, default=2000.0, help="offered rate of the latency run")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--both-dbs", action="store_true", help="e2e on SQLite and on PostgreSQL")
    p.add_argument("--pg-url", default=os.environ.get("FLAGMAN_BENCH_PG", PG_ADMIN_DEFAULT),
                   help="PostgreSQL admin URL; a fresh database is created per run")
    p.add_argument("--bootstrap", default=None, help="an external broker instead of the embedded one")
    p.add_argument("--skip", nargs="*", default=[], choices=PARTS, metavar="PART",
                   help=f"parts to leave out: {', '.join(PARTS)}")
    p.add_argument("--only", nargs="*", default=None, choices=PARTS, metavar="PART")
    p.add_argument("--matcher-sizes", type=_sizes, default=_sizes("1e3,1e4,1e5,1e6"))
    p.add_argument("--matcher-signals", type=int, default=50_000)
    p.add_argument("--footprint-sizes", type=_sizes, default=_sizes("1e5,1e6"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--profile", action="store_true", help="py-spy the worker (needs py-spy)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, about a minute, no targets")
    p.add_argument("--results", type=Path, default=report.RESULTS / "latest.json")
    p.add_argument("--work-dir", type=Path, default=None, help="databases and logs (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p


def apply_smoke(a: argparse.Namespace) -> None:
    a.triggers, a.tables, a.days, a.signals = 300, 300, 3, 0
    a.rate, a.latency_seconds = 200.0, 3.0
    a.matcher_sizes, a.matcher_signals = [100, 1000], 5000
    a.footprint_sizes = [300]


def _wanted(a: argparse.Namespace, part: str) -> bool:
    if a.only is not None and part not in a.only:
        return False
    return part not in a.skip


async def run(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    tables = a.tables or a.triggers
    base = WorkloadConfig(triggers=a.triggers, tables=tables, seed=a.seed, days=1)
    days = a.days or max(1, math.ceil(a.signals / (tables * (1 - base.missing_rate))))
    wl = Workload(replace(base, days=days))
    res: dict[str, Any] = {"workload": {**vars(wl.cfg)}, "errors": {}}
    if _wanted(a, "matcher"):
        _say(f"matcher scale: {a.matcher_sizes}")
        batch = 1000 if a.smoke else 5000
        got = await _part(res["errors"], "matcher", asyncio.to_thread(
            run_sizes, a.matcher_sizes, seed=a.seed, signals=a.matcher_signals, batch=batch))
        if got is not None:
            res["matcher_scale"] = got
    if not any(_wanted(a, p) for p in ("baselines", "e2e", "pipe", "footprint")):
        return res
    broker = None
    bootstrap = a.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker(log_dir=work)
        await broker.start()
        bootstrap = broker.bootstrap
    try:
        stream = None
        if any(_wanted(a, p) for p in ("baselines", "e2e", "pipe")):
            _say(f"workload: {a.triggers} triggers, {tables} tables, {days} days")
            stream = Stream.of(wl)
            res["workload"]["records"] = len(stream.records)
            res["workload"]["expected_commands"] = len(stream.expected)
            res["workload"]["generate_s"] = round(stream.generate_s, 1)
        if stream is not None and _wanted(a, "baselines"):
            got = await _part(res["errors"], "baselines", _baselines(a, bootstrap, stream, work))
            if got is not None:
                res["baselines"] = got
        if stream is not None and _wanted(a, "e2e"):
            res["e2e"] = {}
            for db in (("sqlite", "postgresql") if a.both_dbs else (a.db,)):
                _say(f"end to end on {db}")
                got = await _part(res["errors"], f"e2e {db}", run_e2e(
                    wl, stream, db, bootstrap, work, rate=a.rate,
                    latency_seconds=a.latency_seconds, pg_admin=a.pg_url,
                    api_sample=min(1000, a.triggers), profile=a.profile,
                    skip_latency=not _wanted(a, "latency"),
                    # as `flagman run` does on the embedded broker (see kafka_compat)
                    worker_env=None if a.bootstrap else
                    {"FLAGMAN_FETCH_WAIT_MS": str(TANSU_FETCH_WAIT_MS)}))
                if got is not None:
                    res["e2e"][db] = got
        if stream is not None and _wanted(a, "pipe"):
            _say(f"latency floor: pass-through pipe at {a.rate:g}/s")
            n = max(1, int(a.rate * a.latency_seconds))
            got = await _part(res["errors"], "pipe", run_pipe(
                bootstrap, stream.records[:n], a.rate, work,
                fetch_wait_ms=WorkerConfig.model_fields["fetch_wait_ms"].default
                if a.bootstrap else TANSU_FETCH_WAIT_MS))
            if got is not None:
                res["pipe"] = got
        if _wanted(a, "footprint"):
            res["footprint"] = []
            for n in a.footprint_sizes:
                _say(f"footprint: {n} triggers")
                fwl = Workload(replace(base, triggers=n, tables=n))
                # Start-up is a target at 100k; above that one start gives the RSS.
                got = await _part(res["errors"], f"footprint {n}", run_footprint(
                    fwl, bootstrap, work, profile=a.profile, restart=n <= 100_000))
                if got is not None:
                    res["footprint"].append(got)
    finally:
        if broker is not None:
            await broker.stop()
    return res


async def _part(errors: dict[str, str], name: str, work: Awaitable[Any]) -> Any:
    """Await one part; a failure is recorded in ``errors`` (exit status 1), not fatal."""
    try:
        return await work
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
        _say(f"{name} failed: {errors[name]}")
        return None


async def _baselines(a: argparse.Namespace, bootstrap: str, stream: Stream,
                     work: Path) -> dict[str, Any]:
    topic = f"bench.{uuid.uuid4().hex[:8]}.baseline"
    await ensure_topics(bootstrap, {topic: 3})
    await asyncio.to_thread(produce, bootstrap, topic, stream.records)
    n = len(stream.records)
    _say("baseline: raw aiokafka")
    out = {"raw": await run_raw(bootstrap, topic, n)}
    if _wanted(a, "faust"):
        _say("baseline: faust")
        out["faust"] = await run_faust(bootstrap, topic, n, work)
    return out


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.smoke:
        apply_smoke(a)
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="flagman-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_before = os.getloadavg()
    res = asyncio.run(run(a, work))
    res["targets"] = [] if a.smoke else report.targets(res)
    res["meta"] = {
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1), "smoke": a.smoke,
        "machine": report.machine(), "work_dir": str(work),
        # Anything else running on the machine skews every number: say how busy it was.
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
    }
    path = report.write(res, a.results)
    print(report.markdown(res))
    for part, err in res["errors"].items():
        print(f"\nFAILED {part}: {err}")
    print(f"\nresults: {path}")
    if not (a.keep or a.work_dir or res["errors"]):
        shutil.rmtree(work, ignore_errors=True)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
