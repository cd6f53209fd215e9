"""``flagman worker`` as a child process: started, watched through its JSON log, measured."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """One worker process; its stderr (JSON log lines) goes to ``log_path``."""

    def __init__(self, bootstrap: str, db_url: str, topics: dict[str, str], log_path: Path,
                 *, extra_env: dict[str, str] | None = None) -> None:
        self.env = {
            **os.environ,
            "FLAGMAN_BOOTSTRAP": bootstrap, "FLAGMAN_DB": db_url,
            "FLAGMAN_SIGNAL_TOPICS": topics["signals"], "FLAGMAN_COMMAND_TOPIC": topics["commands"],
            "FLAGMAN_DLQ_TOPIC": topics["dlq"], "FLAGMAN_GROUP": topics["group"],
            "FLAGMAN_SESSION_TIMEOUT_MS": "3000", "FLAGMAN_LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT), **(extra_env or {}),
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.started_wall = 0.0
        self._pos = 0
        self._events: list[dict[str, Any]] = []

    def start(self) -> None:
        log = self.log_path.open("ab")
        self._pos = self.log_path.stat().st_size
        self._events = []
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "worker"],
            env=self.env, stdout=log, stderr=log, cwd=ROOT,
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """Log events of this run, as (event dict with ``_t``: seconds since start)."""
        with self.log_path.open("rb") as f:
            f.seek(self._pos)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self._pos += cut
        now = time.monotonic() - self.started_at
        for line in data[:cut].splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                ev["_t"] = self._since_start(ev, now)
                self._events.append(ev)
        return self._events

    def _since_start(self, ev: dict[str, Any], seen: float) -> float:
        """Seconds from spawn to the event: from its own timestamp when it has one."""
        ts = ev.get("timestamp")
        if isinstance(ts, str):
            try:
                return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - self.started_wall
            except ValueError:
                pass
        return seen

    async def wait_event(self, pred: Any, timeout: float, what: str,
                         poll: float = 0.02) -> dict[str, Any]:
        """Wait for a log event matching ``pred``; its ``_t`` is when it was first seen."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            evs = self.events()
            for ev in evs[seen:]:
                if pred(ev):
                    return ev
            seen = len(evs)
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}) before {what}; "
                                   f"see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker: no {what} within {timeout:g}s; see {self.log_path}")
            await asyncio.sleep(poll)

    async def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from spawn to the ``worker ready`` log line."""
        ev = await self.wait_event(lambda e: e.get("event") == "worker ready", timeout, "ready")
        return float(ev["_t"])

    async def wait_assigned(self, timeout: float = 120) -> float:
        ev = await self.wait_event(
            lambda e: e.get("event") == "partitions assigned" and e.get("partitions"),
            timeout, "partition assignment")
        return float(ev["_t"])

    def rss_mib(self) -> float:
        """Resident set size of the worker, in MiB."""
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    async def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait, 10)
