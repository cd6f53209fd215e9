"""Database side of the fault suite: queries on the store under test, the offset audit,
and the database faults (a SQLite lock held by another process, a PostgreSQL proxy
that loses one commit acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from typing import Any

from sqlalchemy.engine import make_url

from tests.faults._kafka import committed_offsets


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



async def unpublished_firings(db_url: str) -> int:
    rows = await db_query(db_url, "SELECT count(*) FROM unpublished")
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
