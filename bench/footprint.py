"""Footprint of a worker process: resident memory and start-up time by trigger count.

For each size: a fresh SQLite database holding that many triggers, fresh topics, then

* first start: spawn to ``worker ready`` (the process has loaded and compiled every
  trigger, evaluated the look-back of versions nobody evaluated yet, and connected);
* restart: the same, a second time, on the same database (the usual deploy/restart);
  left out with ``restart=False`` (for the largest sizes, where one start says enough);

with the worker's RSS once ready and once its partitions are assigned.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from runtime.broker import ensure_topics

from .db import BenchDb, load_triggers
from .proc import WorkerProcess
from .profile import PySpy
from .workload import Workload


async def run_footprint(wl: Workload, bootstrap: str, work: Path, *, api_sample: int = 200,
                        timeout: float = 3600, profile: bool = False,
                        restart: bool = True) -> dict[str, Any]:
    """Start the worker twice over ``wl``'s triggers; report times and RSS."""
    db = BenchDb("sqlite", work)
    url = await db.create()
    u = uuid.uuid4().hex[:8]
    topics = {"signals": f"fp.{u}.signals", "commands": f"fp.{u}.commands",
              "dlq": f"fp.{u}.dlq", "group": f"fp-{u}"}
    out: dict[str, Any] = {"triggers": wl.cfg.triggers}
    try:
        await ensure_topics(bootstrap, {topics[k]: 3 for k in ("signals", "commands", "dlq")})
        out["load"] = await load_triggers(url, wl, api_sample=min(api_sample, wl.cfg.triggers))
        for run in ("first_start", "restart") if restart else ("first_start",):
            worker = WorkerProcess(bootstrap, url, topics, work / f"footprint-{u}.log")
            worker.start()
            spy = PySpy(worker.pid, work / f"profile-startup-{run}-{u}.txt") if profile else None
            try:
                ready = await worker.wait_ready(timeout)
                rss_ready = worker.rss_mib()
                if spy:
                    out[f"profile_{run}"] = spy.stop()
                await worker.wait_assigned(timeout=120)
                out[run] = {"ready_s": round(ready, 2), "rss_ready_mib": round(rss_ready, 1),
                            "rss_assigned_mib": round(worker.rss_mib(), 1)}
            finally:
                await worker.stop()
    finally:
        await db.drop()
    return out
