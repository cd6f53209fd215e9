"""Test helpers: produce and read topics, apply triggers, run the worker as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from runtime.apply import apply_definitions
from runtime.config import load_config
from runtime.kafka_compat import read_to_end
from runtime.store.sql import SqlStore
from runtime.worker import Worker
from triggers import TriggerDef, load_text

ROOT = Path(__file__).resolve().parent.parent

Record = bytes | tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def join_defs(n: int, version: int = 1) -> list[TriggerDef]:
    """``n`` triggers ``t000``... joining signals ``a`` and ``b`` on ``dt``, as definitions
    ready for ``apply_definitions``; ``version`` changes their params."""
    return [
        TriggerDef.from_canonical({
            "id": f"t{i:03d}", "workflow": "wf", "step": None, "owner": None,
            "description": None, "join": ["dt"], "on_update": "ignore", "lookback_s": 0,
            "params": {"v": version},
            "when": {"all": [
                {"signal": "a", "where": {"table": {"eq": f"db.{i % 7}"}}, "as": "x",
                 "join_as": {}},
                {"signal": "b", "where": {"r": {"in": ["us", "eu"]}}, "as": None, "join_as": {}},
            ]},
        })
        for i in range(n)
    ]


async def set_schema_version(db_url: str, version: int, *, drop: Sequence[str] = ()) -> None:
    """Make a database look as a flagman of schema ``version`` left it: the recorded
    version set, the tables of later migrations in ``drop`` dropped."""
    store = SqlStore(db_url)
    try:
        async with store.engine.begin() as conn:
            for table in drop:
                await conn.exec_driver_sql(f"DROP TABLE {table}")
            await conn.exec_driver_sql(
                f"UPDATE flagman_meta SET value = '{version}' WHERE key = 'schema_version'")
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def offline_worker(db_url: str, **settings: Any) -> AsyncIterator[Worker]:
    """A worker in this process with its store open and no broker, for tests that call
    its batch and store methods directly; ``settings`` as ``load_config`` takes them."""
    worker = Worker(load_config(db=db_url, **settings))
    await worker.store.open()
    try:
        yield worker
    finally:
        await worker.store.close()


def sig(name: str, params: dict[str, Any], **extra: Any) -> bytes:
    """A native signal record value."""
    return json.dumps({"name": name, "params": params, **extra}).encode()


async def produce(
    bootstrap: str, topic: str, records: Sequence[Record], *, partition: int | None = None,
    max_request_size: int = 1 << 20,
) -> list[tuple[int, int]]:
    """Send records, wait for every ack; return each record's ``(partition, offset)``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5,
        max_request_size=max_request_size, max_batch_size=min(max_request_size, 1 << 20),
    )
    await producer.start()
    try:
        futs = []
        for r in records:
            if isinstance(r, bytes):
                key, value, headers = None, r, []
            else:
                key, value, headers = r
            futs.append(await producer.send(topic, value, key=key, headers=headers, partition=partition))
        metas = await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_to_end(bootstrap, topic)


async def command_ids(bootstrap: str, topic: str) -> list[str]:
    """Every command_id on the command topic, in topic order, duplicates kept."""
    out = []
    for rec in await read_topic(bootstrap, topic):
        out.append(json.loads(rec.value)["command_id"])
    return out


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 60.0, every: float = 0.2, what: str = "condition"
) -> None:
    """Poll ``check`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


async def apply_yaml(db_url: str, text: str, *, prune: bool = False) -> Any:
    store = SqlStore(db_url)
    await store.open()
    try:
        return await apply_definitions(store, load_text(text, "test.yaml"), prune=prune)
    finally:
        await store.close()


class WorkerProc:
    """``flagman worker`` as a child process, killable with SIGKILL."""

    live: list[WorkerProc] = []  # reaped after every test by the conftest fixture

    @classmethod
    def reap_all(cls) -> None:
        for w in cls.live:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(10)
        cls.live.clear()

    def __init__(self, bootstrap: str, db_url: str, env: dict[str, str], log_path: Path) -> None:
        self.env = {
            **os.environ,
            "FLAGMAN_BOOTSTRAP": bootstrap,
            "FLAGMAN_DB": db_url,
            "FLAGMAN_SESSION_TIMEOUT_MS": "3000",
            "FLAGMAN_RELOAD_INTERVAL_S": "0.5",
            "FLAGMAN_LOG_FORMAT": "json",
            "FLAGMAN_LOG_LEVEL": "debug",  # one line per command issued
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _assigned_count(self) -> int:
        if not self.log_path.exists():
            return 0
        return sum(1 for e in self.log_lines()
                   if e.get("event") == "partitions assigned" and e.get("partitions"))

    def start(self) -> None:
        self._assigned_before = self._assigned_count()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "worker"],
            env=self.env, stdout=log, stderr=log, cwd=ROOT,
        )
        log.close()
        WorkerProc.live.append(self)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    async def wait_assigned(self, timeout: float = 60) -> None:
        async def check() -> bool:
            assert self.alive(), self.log_path.read_text()[-3000:]
            return self._assigned_count() > self._assigned_before

        await wait_until(check, timeout=timeout, what="partition assignment")
