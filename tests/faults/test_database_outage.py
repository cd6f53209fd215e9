"""Fault 3: the database unavailable.

* SQLite: another process holds ``BEGIN EXCLUSIVE`` on the file. The worker uses WAL
  and ``busy_timeout=30000``, so a lock shorter than 30 s only stalls its write
  transaction; a longer one makes the transaction fail ("database is locked") and the
  batch must be retried with backoff. Both are run, with records in flight and with
  the worker idle.
* PostgreSQL: the worker's connections terminated (``pg_terminate_backend``) in the
  middle of batch transactions, again and again; and the database refusing
  connections for a while (``ALLOW_CONNECTIONS false``, as during a restart).

Throughout, the consumer group's committed offsets are sampled and checked against
the database: every offset below a committed one must be persisted (no offset
committed for unpersisted work). Afterwards: exactly the expected commands, none twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN, Topics
from tests.faults._support import (
    JoinWorkload,
    OffsetAudit,
    SqliteLocker,
    committed_offsets,
    db_query,
    ends_of,
    events,
    produce_at,
    report,
    sqlite_path,
    uniq_signal,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import apply_yaml, command_ids, wait_until

pytestmark = pytest.mark.integration

LONG = [pytest.mark.slow, pytest.mark.timeout(900)]
ADMIN_DSN = PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://")


class Stage:
    """One worker over a small join workload (no duplicates: the offset audit needs
    every consumed offset to be stored), the stream sent in two halves."""

    def __init__(self, bootstrap: str, db: str, topics: Topics, make_worker: MakeWorker,
                 size: tuple[int, int, int] = (40, 100, 16), batch: int = 25) -> None:
        self.bootstrap, self.db, self.topics = bootstrap, db, topics
        self.wl = JoinWorkload(*size, seed=9, dup_rate=0.0)
        self.records, self.expected = self.wl.records(), self.wl.expected()
        env = {**topics.env(), "FLAGMAN_BATCH_MAX": str(batch), "FLAGMAN_FETCH_WAIT_MS": "50"}
        self.worker = make_worker(bootstrap, db, env)
        self.positions: list[tuple[int, int]] = []
        self.audit = OffsetAudit(bootstrap, topics.group, topics.signals, db)
        self._stop = asyncio.Event()
        self._audit_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await apply_yaml(self.db, self.wl.yaml())
        self.worker.start()
        await self.worker.wait_assigned()
        self._audit_task = asyncio.create_task(self.audit.run(self._stop))

    async def send(self, part: int) -> None:
        half = len(self.records) // 2
        recs = self.records[:half] if part == 0 else self.records[half:]
        self.positions += await produce_at(self.bootstrap, self.topics.signals, recs)

    async def committed(self) -> dict[int, int]:
        return await committed_offsets(self.bootstrap, self.topics.group, self.topics.signals)

    async def wait_sent_committed(self) -> None:
        ends = ends_of(self.positions)

        async def ok() -> bool:
            self.alive()
            c = await self.committed()
            return all(c.get(p, 0) >= e for p, e in ends.items())

        await wait_until(ok, timeout=60, what="the records sent so far committed")

    def alive(self) -> None:
        assert self.worker.alive(), "the worker died:\n" + self.worker.log_path.read_text()[-3000:]

    async def finish(self, timeout: float = 180) -> list[str]:
        await wait_complete(self.bootstrap, self.topics.commands, self.topics.group,
                            self.topics.signals, self.expected, ends_of(self.positions),
                            timeout=timeout, alive=self.alive)
        self._stop.set()
        assert self._audit_task is not None
        await self._audit_task
        await self.audit.check()
        assert self.worker.terminate() == 0
        return await command_ids(self.bootstrap, self.topics.commands)

    async def close(self) -> None:
        self._stop.set()
        if self._audit_task is not None:
            await self._audit_task
        if self.worker.alive():
            self.worker.kill9()

    def check(self, ids: list[str]) -> None:
        assert not self.audit.violations, self.audit.violations[:5]
        assert self.audit.samples > 5
        assert set(ids) == self.expected
        assert len(ids) == len(set(ids)), "a command_id reached the topic twice"


@pytest.mark.parametrize(
    ("hold_s", "busy"),
    [
        pytest.param(5.0, True, id="short-5s-busy"),
        pytest.param(10.0, True, id="long-10s-busy", marks=LONG),
        pytest.param(40.0, True, id="long-40s-busy", marks=LONG),
        pytest.param(40.0, False, id="long-40s-idle", marks=LONG),
    ],
)
async def test_sqlite_file_locked_by_another_process(
    hold_s: float, busy: bool, kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics,
    tmp_path: Path,
) -> None:
    db = await make_db("sqlite")
    st = Stage(kafka_bootstrap, db, topics, make_worker)
    try:
        await st.start()
        await st.send(0)
        await st.wait_sent_committed()
        locker = SqliteLocker(sqlite_path(db), hold_s)
        await locker.wait_locked()
        at_lock = await st.committed()
        if busy:
            await st.send(1)
        advanced: dict[int, int] = {}
        while locker.proc.poll() is None:  # the lock is the fault: watch the worker under it
            st.alive()
            for p, c in (await st.committed()).items():
                if c > at_lock.get(p, 0):
                    advanced[p] = c
            await asyncio.sleep(0.5)
        held = await locker.wait_released()
        released_at = time.monotonic()
        if not busy:
            await st.send(1)
        await st.wait_sent_committed()
        caught_up_s = time.monotonic() - released_at
        ids = await st.finish()
    finally:
        await st.close()
    retries = events(st.worker, "database unavailable, retrying batch")
    report("sqlite locked", hold_s=round(held, 1), busy=busy, records=len(st.records),
           expected=len(st.expected), commands=len(ids), missing=len(st.expected - set(ids)),
           duplicates=len(ids) - len(set(ids)), offset_samples=st.audit.samples,
           offset_violations=len(st.audit.violations), commits_during_lock=advanced,
           batch_retries=len(retries), retry_in_s=[e["retry_in_s"] for e in retries][:10],
           caught_up_after_release_s=round(caught_up_s, 1))
    st.check(ids)
    assert not advanced, f"offsets committed while the database was locked: {advanced}"
    if busy and hold_s > 30:
        assert retries and retries[0]["error"] == "database is locked", \
            "beyond busy_timeout the batch must fail and be retried"


@pytest.mark.parametrize(
    "terminations",
    [
        pytest.param(6, id="short"),
        pytest.param(40, id="long", marks=LONG),
    ],
)
async def test_postgres_connections_terminated_mid_batch(
    terminations: int, kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker,
    topics: Topics, tmp_path: Path,
) -> None:
    db = await make_db("postgresql")
    dbname = db.rpartition("/")[2]
    size = (40, 100, 16) if terminations < 10 else (200, 400, 40)
    st = Stage(kafka_bootstrap, db, topics, make_worker, size=size, batch=20)
    killed: list[str] = []
    extra = 0
    try:
        await st.start()
        admin = await asyncpg.connect(ADMIN_DSN)
        rnd = random.Random(2)
        stop = asyncio.Event()

        async def hunt() -> None:
            # Mid-batch: a backend of this database inside a transaction of the batch
            # pipeline (holding tuple locks, or having written rows).
            while not stop.is_set() and len(killed) < terminations:
                rows = await admin.fetch(
                    "SELECT pid, left(query, 60) AS q FROM pg_stat_activity "
                    "WHERE datname = $1 AND xact_start IS NOT NULL AND "
                    "(backend_xid IS NOT NULL OR query LIKE '%pg_advisory_xact_lock%')",
                    dbname,
                )
                if rows and await admin.fetchval("SELECT pg_terminate_backend($1)", rows[0]["pid"]):
                    killed.append(rows[0]["q"])
                    await asyncio.sleep(rnd.uniform(0.1, 0.5))  # spacing between faults
                else:
                    await asyncio.sleep(0.005)

        hunter = asyncio.create_task(hunt())
        try:
            step = max(20, len(st.records) // (4 * terminations))
            for i in range(0, len(st.records), step):
                st.positions += await produce_at(kafka_bootstrap, topics.signals,
                                                 st.records[i:i + step])
                st.alive()
                if len(killed) < terminations:
                    await asyncio.sleep(0.25)  # a steady stream: batches in flight to hit
            # Stream done before enough faults: keep batches coming with signals that no
            # trigger takes (new, so stored: the offset audit still holds).
            deadline = time.monotonic() + 180
            while len(killed) < terminations and time.monotonic() < deadline:
                noise = [uniq_signal(extra + k, name="noise") for k in range(step)]
                extra += step
                st.positions += await produce_at(kafka_bootstrap, topics.signals, noise)
                st.alive()
                await asyncio.sleep(0.25)
        finally:
            stop.set()
            await hunter
            await admin.close()
        ids = await st.finish()
    finally:
        await st.close()
    retries = events(st.worker, "database unavailable, retrying batch")
    report("postgres backends terminated mid-batch", terminations=len(killed),
           statements_hit=sorted({" ".join(q.split())[:32] for q in killed}),
           records=len(st.records), noise_records=extra, expected=len(st.expected),
           commands=len(ids), missing=len(st.expected - set(ids)),
           duplicates=len(ids) - len(set(ids)), offset_samples=st.audit.samples,
           offset_violations=len(st.audit.violations), batch_retries=len(retries))
    assert len(killed) >= terminations
    st.check(ids)
    assert retries, "a terminated batch transaction must be retried"


@pytest.mark.parametrize(
    ("hold_s", "busy"),
    [
        pytest.param(5.0, False, id="short-5s-idle"),
        pytest.param(5.0, True, id="short-5s-busy"),
        pytest.param(20.0, False, id="long-20s-idle", marks=LONG),
        pytest.param(20.0, True, id="long-20s-busy", marks=LONG),
    ],
)
async def test_postgres_refusing_connections(
    hold_s: float, busy: bool, kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics,
    tmp_path: Path,
) -> None:
    """As during a database restart: existing connections cut, new ones refused."""
    db = await make_db("postgresql")
    dbname = db.rpartition("/")[2]
    st = Stage(kafka_bootstrap, db, topics, make_worker)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await st.start()
        await st.send(0)
        await st.wait_sent_committed()
        if busy:
            await st.send(1)
        await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1", dbname)
            down_at = time.monotonic()
            while time.monotonic() - down_at < hold_s:  # the outage itself
                st.alive()
                await asyncio.sleep(0.5)
        finally:
            await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        if not busy:
            await st.send(1)
        ids = await st.finish()
    finally:
        await admin.close()
        await st.close()
    retries = events(st.worker, "database unavailable, retrying batch")
    report("postgres refusing connections", hold_s=hold_s, busy=busy, records=len(st.records),
           expected=len(st.expected), commands=len(ids), missing=len(st.expected - set(ids)),
           duplicates=len(ids) - len(set(ids)), offset_samples=st.audit.samples,
           offset_violations=len(st.audit.violations), batch_retries=len(retries),
           retry_in_s=[e["retry_in_s"] for e in retries][:12])
    st.check(ids)
    if busy:
        delays = [float(e["retry_in_s"]) for e in retries]
        assert len(delays) >= 3 and delays[-1] > delays[0], f"no backoff: {delays}"


async def test_postgres_commit_acknowledgement_lost(
    kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics
) -> None:
    """The connection dies after the server committed a batch but before the worker
    heard so (an ambiguous commit, as when a backend is terminated during COMMIT).
    The worker retries the batch, whose signals are now all known: the commands that
    the first attempt stored must still be published, without waiting for a restart."""
    from tests.faults._support import CommitLossProxy

    db = await make_db("postgresql")
    proxy = CommitLossProxy()
    await proxy.start()
    st = Stage(kafka_bootstrap, proxy.url(db), topics, make_worker)
    st.audit.db_url = db  # the audit reads around the proxy
    try:
        await st.start()
        await st.send(0)
        await st.wait_sent_committed()
        proxy.arm()
        await st.send(1)
        try:
            ids = await st.finish(timeout=30)
        except AssertionError:
            ids = await command_ids(kafka_bootstrap, topics.commands)
    finally:
        await st.close()
        await proxy.stop()
    unpublished = (await db_query(db, "SELECT count(*) FROM unpublished"))[0][0]
    retries = events(st.worker, "database unavailable, retrying batch")
    report("postgres commit acknowledgement lost", faults=proxy.fired,
           retry_errors=sorted({e["error"] for e in retries}), expected=len(st.expected),
           commands=len(ids), missing=len(st.expected - set(ids)),
           duplicates=len(ids) - len(set(ids)), unpublished_firings=unpublished)
    assert proxy.fired == 1
    assert not st.expected - set(ids), (
        f"{len(st.expected - set(ids))} commands stored by the committed first attempt were "
        "never published (the retried batch found its signals known and issued nothing)")
    st.check(ids)
