"""SQLAlchemy store for SQLite (one machine) and PostgreSQL (several workers).

The hot path (signals, hits, firings) uses driver-level SQL through SQLAlchemy's
``exec_driver_sql``: executemany on SQLite, one ``unnest`` statement on PostgreSQL.

Concurrency: every batch transaction first takes the locks of the join tuples it
touches (SQLite: ``BEGIN IMMEDIATE``, one writer at a time; PostgreSQL: transaction
advisory locks, in sorted order), then reloads what other workers committed for those
tuples since it last looked (rows above a per-tuple watermark of ``hid``/``fid``).
Ids are allocated after the locks are held, so per tuple they grow in commit order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from signals import SignalRef
from triggers import Hit, Matcher, MatchState

from ..config import SQLITE_CACHE_MIB
from ..logs import get_logger
from .base import FiringRow, PendingCommand, SignalRow, StoredTrigger, StoreError, TriggerRow

__all__ = ["SqlStore", "SqlTx", "StoreError", "check_db_url", "lock_id"]
from .schema import SchemaMismatch, check_version, migrate

log = get_logger("flagman.store")
T = TypeVar("T")

_CHUNK = 500
_IN_CHUNK = 900  # values in one SQLite IN list (under the 999-variable limit of older builds)
# Rows other workers committed for these tuples since we last looked (PostgreSQL; see
# SqlTx.refresh, and tests/runtime/test_store_plans.py for the plans they must get).
# Each tuple is one range of the (tk, id) index, whatever the planner estimates:
# * a LATERAL subquery kept apart by OFFSET 0 (else it is flattened into a join; as a
#   plain join, the generic plan asyncpg's prepared statement goes to after five runs
#   hashed a full scan of hits, 120-200 ms per batch at 1.3M hits, since a tuple is a
#   day and has few distinct values);
# * the bound as a row comparison, which only the (tk, id) index can serve (as
#   ``id > wm`` the generic plan took the primary key from ``wm`` up, which for a new
#   tuple, ``wm = 0``, is the whole table).
PG_REFRESH_FIRINGS = (
    "SELECT f.trigger_id, f.tk, f.generation, f.consumed, f.fid "
    "FROM unnest($1::text[], $2::bigint[]) AS w(tk, wm) CROSS JOIN LATERAL "
    "(SELECT * FROM firings WHERE firings.tk = w.tk AND (firings.tk, firings.fid) > (w.tk, w.wm) "
    "OFFSET 0) f"
)
PG_REFRESH_HITS = (
    "SELECT h.lc_key, h.tk, h.seq, h.hid "
    "FROM unnest($1::text[], $2::bigint[]) AS w(tk, wm) CROSS JOIN LATERAL "
    "(SELECT * FROM hits WHERE hits.tk = w.tk AND (hits.tk, hits.hid) > (w.tk, w.wm) "
    "OFFSET 0) h"
)


def lock_id(tk: str) -> int:
    """A signed 64-bit advisory-lock id for a tuple key (collisions only coarsen locking)."""
    return int.from_bytes(hashlib.sha256(tk.encode()).digest()[:8], "big", signed=True)


class Watermarks:
    """Per tuple key: the highest hit and firing ids already merged into the state."""

    def __init__(self) -> None:
        self.hid: dict[str, int] = {}
        self.fid: dict[str, int] = {}

    def clear(self) -> None:
        self.hid.clear()
        self.fid.clear()


class SqlTx:
    """One batch transaction (see ``base.Tx``)."""

    def __init__(self, store: SqlStore, conn: AsyncConnection) -> None:
        self.s = store
        self.c = conn
        self.pg = store.is_postgres
        self._top: dict[str, int] | None = None

    async def _q(self, sql: str, params: Any = ()) -> list[Any]:
        res = await self.c.exec_driver_sql(sql, params)
        return list(res.fetchall()) if res.returns_rows else []

    async def _many(self, sql: str, rows: Any) -> None:
        """One statement for many parameter rows (an empty list must not reach here)."""
        await self.c.exec_driver_sql(sql, rows)

    async def _next_ids(self, name: str, n: int) -> list[int]:
        if n == 0:
            return []
        if self.pg:
            rows = await self._q(
                f"SELECT nextval('flagman_{name}') FROM generate_series(1, $1)", (n,)
            )
            return [r[0] for r in rows]
        if self._top is None:
            # BEGIN IMMEDIATE holds the write lock: nobody else adds rows until commit,
            # so the three maxima are read once per transaction.
            row = (await self._q(
                "SELECT (SELECT coalesce(max(seq), 0) FROM signals), "
                "(SELECT coalesce(max(hid), 0) FROM hits), "
                "(SELECT coalesce(max(fid), 0) FROM firings)"))[0]
            self._top = {"seq": row[0], "hid": row[1], "fid": row[2]}
        top = self._top[name]
        self._top[name] = top + n
        return list(range(top + 1, top + 1 + n))

    async def lock(self, tuple_keys: Iterable[str]) -> None:
        if not self.pg:
            return  # BEGIN IMMEDIATE already holds the database write lock
        ids = sorted({lock_id(tk) for tk in tuple_keys})
        if ids:
            await self._q(
                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                "(SELECT unnest($1::bigint[]) AS k ORDER BY 1) s",
                (ids,),
            )

    async def refresh(self, tuple_keys: Iterable[str], matcher: Matcher, state: MatchState) -> None:
        tks = list(tuple_keys)
        if not tks:
            return
        wm = self.s.wm
        hwm = [wm.hid.get(tk, 0) for tk in tks]
        fwm = [wm.fid.get(tk, 0) for tk in tks]
        if self.pg:
            fired = await self._q(PG_REFRESH_FIRINGS, (tks, fwm))
            hits = await self._q(PG_REFRESH_HITS, (tks, hwm))
        else:
            # One statement per 200 tuples (SQLite allows 500 arms in a compound select),
            # each arm an index range: rows above the tuple's watermarks.
            fired, hits = [], []
            for i in range(0, len(tks), 200):
                arms: list[str] = []
                params: list[Any] = []
                for tk, h, f in zip(tks[i : i + 200], hwm[i : i + 200], fwm[i : i + 200],
                                    strict=True):
                    arms.append("SELECT 0, lc_key, tk, seq, NULL, hid FROM hits "
                                "WHERE tk = ? AND hid > ?")
                    arms.append("SELECT 1, trigger_id, tk, generation, consumed, fid "
                                "FROM firings WHERE tk = ? AND fid > ?")
                    params += [tk, h, tk, f]
                for r in await self._q(" UNION ALL ".join(arms), tuple(params)):
                    if r[0]:
                        fired.append(r[1:])
                    else:
                        hits.append((r[1], r[2], r[3], r[5]))
        matcher.absorb(
            state,
            [(r[0], r[1], r[2], _consumed(r[3])) for r in fired],
            [r[:3] for r in hits],
        )
        for r in fired:
            if r[4] > wm.fid.get(r[1], 0):
                wm.fid[r[1]] = r[4]
        for r in hits:
            if r[3] > wm.hid.get(r[1], 0):
                wm.hid[r[1]] = r[3]

    async def insert_signals(self, rows: Sequence[SignalRow]) -> list[int | None]:
        if not rows:
            return []
        if self.pg:
            seqs = await self._next_ids("seq", len(rows))
            cols = list(zip(*[_signal_tuple(r) for r in rows], strict=True))
            got = await self._q(
                "INSERT INTO signals (seq, name, sig_id, explicit_id, source, time, time_ms, params, "
                "payload, encoding, topic, partition, \"offset\", record_ts_ms) "
                "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[], "
                "$6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], "
                "$12::int[], $13::bigint[], $14::bigint[]) "
                "ON CONFLICT (sig_id, name) DO NOTHING RETURNING seq",
                (seqs, *cols),
            )
            inserted = {r[0] for r in got}
            return [s if s in inserted else None for s in seqs]
        existing: set[tuple[str, str]] = set()
        ids = [r.sig_id for r in rows]
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for sig_id, name in await self._q(
                f"SELECT sig_id, name FROM signals WHERE sig_id IN ({marks})", tuple(chunk)
            ):
                existing.add((sig_id, name))
        new = [r for r in rows if (r.sig_id, r.name) not in existing]
        fresh = iter(await self._next_ids("seq", len(new)))
        out: list[int | None] = []
        params = []
        for r in rows:
            if (r.sig_id, r.name) in existing:
                out.append(None)
            else:
                seq = next(fresh)
                out.append(seq)
                params.append((seq, *_signal_tuple(r)))
        if params:  # an empty list would run the statement once, without parameters
            await self._many(
                "INSERT INTO signals (seq, name, sig_id, explicit_id, source, time, time_ms, "
                "params, payload, encoding, topic, partition, \"offset\", record_ts_ms) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                params,
            )
        return out

    async def insert_hits(self, hits: Sequence[Hit]) -> None:
        if not hits:
            return
        wm = self.s.wm.hid
        if self.pg:
            got = await self._q(
                "INSERT INTO hits (hid, lc_key, tk, seq) "
                "SELECT nextval('flagman_hid'), * FROM unnest($1::text[], $2::text[], $3::bigint[]) "
                "ON CONFLICT DO NOTHING RETURNING hid, tk",
                ([h.lc_key for h in hits], [h.tk for h in hits], [h.seq for h in hits]),
            )
            for hid, tk in got:
                if hid > wm.get(tk, 0):
                    wm[tk] = hid
            return
        hids = await self._next_ids("hid", len(hits))
        await self._many(
            "INSERT OR IGNORE INTO hits (hid, lc_key, tk, seq) VALUES (?,?,?,?)",
            [(hid, h.lc_key, h.tk, h.seq) for hid, h in zip(hids, hits, strict=True)],
        )
        for hid, h in zip(hids, hits, strict=True):
            wm[h.tk] = hid

    async def insert_firings(self, rows: Sequence[FiringRow]) -> None:
        if not rows:
            return
        fids = await self._next_ids("fid", len(rows))
        wm = self.s.wm.fid
        params = [
            (fid, r.command_id, r.trigger_id, r.trigger_version, r.tk, r.generation, r.cause_seq,
             r.consumed, r.command, r.workflow, r.source_topic, r.source_partition,
             r.cmd_partition, r.scan_from, r.created_ms)
            for fid, r in zip(fids, rows, strict=True)
        ]
        if self.pg:
            cols = list(zip(*params, strict=True))
            await self._q(
                "INSERT INTO firings (fid, command_id, trigger_id, trigger_version, tk, generation, "
                "cause_seq, consumed, command, workflow, source_topic, source_partition, "
                "cmd_partition, scan_from, created_ms) SELECT * FROM unnest("
                "$1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[], "
                "$7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], "
                "$13::int[], $14::bigint[], $15::bigint[])",
                tuple(list(c) for c in cols),
            )
            await self._q(
                "INSERT INTO unpublished (fid, source_topic, source_partition) "
                "SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[])",
                (fids, [r.source_topic for r in rows], [r.source_partition for r in rows]),
            )
        else:
            await self._many(
                "INSERT INTO firings (fid, command_id, trigger_id, trigger_version, tk, generation, "
                "cause_seq, consumed, command, workflow, source_topic, source_partition, "
                "cmd_partition, scan_from, created_ms) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                params,
            )
            await self._many(
                "INSERT INTO unpublished (fid, source_topic, source_partition) VALUES (?,?,?)",
                [(fid, r.source_topic, r.source_partition)
                 for fid, r in zip(fids, rows, strict=True)],
            )
        for fid, r in zip(fids, rows, strict=True):
            r.fid = fid
            if fid > wm.get(r.tk, 0):
                wm[r.tk] = fid

    async def signal_refs(self, seqs: Iterable[int]) -> dict[int, SignalRef]:
        want = sorted(set(seqs))
        out: dict[int, SignalRef] = {}
        for i in range(0, len(want), _CHUNK):
            chunk = want[i : i + _CHUNK]
            if self.pg:
                rows = await self._q(_REF_SQL + "WHERE seq = ANY($1::bigint[])", (chunk,))
            else:
                marks = ",".join("?" * len(chunk))
                rows = await self._q(_REF_SQL + f"WHERE seq IN ({marks})", tuple(chunk))
            for r in rows:
                out[r[0]] = _ref(r)
        return out

    async def mark_published(self, fids: Sequence[int]) -> None:
        if not fids:
            return
        if self.pg:
            await self._q("DELETE FROM unpublished WHERE fid = ANY($1::bigint[])", (list(fids),))
        else:
            await self._many("DELETE FROM unpublished WHERE fid = ?", [(f,) for f in fids])

    async def dead_letters(self, rows: Sequence[tuple[str, int, int, str, int]]) -> None:
        if not rows:
            return
        if self.pg:
            cols = list(zip(*rows, strict=True))
            await self._q(
                "INSERT INTO dead_letters (topic, partition, \"offset\", error, record_ts_ms) "
                "SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::bigint[]) "
                "ON CONFLICT DO NOTHING",
                tuple(list(c) for c in cols),
            )
        else:
            await self._many(
                "INSERT OR IGNORE INTO dead_letters (topic, partition, \"offset\", error, record_ts_ms) "
                "VALUES (?,?,?,?,?)",
                list(rows),
            )

    async def history(
        self, names: Sequence[str], min_seq: int
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """Stored signals of these names from ``min_seq`` on, in seq order."""
        if not names:
            return []
        if self.pg:
            rows = await self._q(
                "SELECT seq, name, params FROM signals WHERE name = ANY($1::text[]) AND seq >= $2 "
                "ORDER BY seq",
                (list(names), min_seq),
            )
        else:
            marks = ",".join("?" * len(names))
            rows = await self._q(
                f"SELECT seq, name, params FROM signals WHERE name IN ({marks}) AND seq >= ? "
                "ORDER BY seq",
                (*names, min_seq),
            )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]


class _DirectTx(SqlTx):
    """A SQLite batch transaction on a plain ``sqlite3`` connection, run in a thread.

    Its coroutines never suspend: the whole batch body (statements and the matcher
    between them) runs in one hop to the store's thread, instead of one hop through
    SQLAlchemy and aiosqlite per statement (about 0.5 ms each, ten per batch), and the
    thread holds the GIL for the body instead of trading it with the event loop at
    every statement. See ``SqlStore.run_batch``.
    """

    def __init__(self, store: SqlStore, raw: sqlite3.Connection) -> None:
        self.s = store
        self.raw = raw
        self.pg = False
        self._top = None

    async def _q(self, sql: str, params: Any = ()) -> list[Any]:
        return self.raw.execute(sql, params).fetchall()

    async def _many(self, sql: str, rows: Any) -> None:
        self.raw.executemany(sql, rows)


def _drive(coro: Any) -> Any:
    """Run a coroutine that never suspends to its end, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a direct SQLite transaction awaited something that suspends")


_REF_SQL = (
    "SELECT seq, name, sig_id, topic, partition, \"offset\", time, params, payload FROM signals "
)


def _ref(r: Any) -> SignalRef:
    return SignalRef(
        seq=r[0], name=r[1], id=r[2], topic=r[3], partition=r[4], offset=r[5], time=r[6],
        params=json.loads(r[7]), payload=None if r[8] is None else json.loads(r[8]),
    )


def _consumed(text: str | None) -> dict[int, int] | None:
    return None if text is None else {int(k): int(v) for k, v in json.loads(text).items()}


def _checkpoint(conn: sqlite3.Connection) -> str | None:
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return None
    except sqlite3.Error as exc:
        return str(exc)


def _signal_tuple(r: SignalRow) -> tuple[Any, ...]:
    return (
        r.name, r.sig_id, r.explicit_id, r.source, r.time, r.time_ms, r.params, r.payload,
        r.encoding, r.topic, r.partition, r.offset, r.record_ts_ms,
    )


def check_db_url(url: str) -> str:
    """Validate a SQLAlchemy URL for a supported async driver; return it unchanged."""
    try:
        u = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with a long message
        raise StoreError(f"FLAGMAN_DB: not a database URL: {url!r}") from exc
    if u.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise StoreError(
            f"FLAGMAN_DB: unsupported driver {u.drivername!r}; use sqlite+aiosqlite:///PATH "
            "or postgresql+asyncpg://USER@HOST/DB"
        )
    return url


class SqlStore:
    """The store over one SQLAlchemy async engine."""

    def __init__(self, url: str, *, pool_size: int = 4, checkpoint_s: float | None = None,
                 batch_cache_mib: int = SQLITE_CACHE_MIB) -> None:
        """``checkpoint_s`` (SQLite): checkpoint the write-ahead log from a background task
        at this interval instead of in the committing transaction (see ``_checkpoints``)."""
        self.url = check_db_url(url)
        u = make_url(url)
        self.is_postgres = u.drivername.startswith("postgresql")
        self.wm = Watermarks()
        self._db_path = u.database if not self.is_postgres else None
        self._checkpoint_s = checkpoint_s if self._db_path not in (None, "", ":memory:") else None
        self._checkpointer: asyncio.Task[None] | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._raw: sqlite3.Connection | None = None
        self._batch_cache_kib = batch_cache_mib * 1024
        if self.is_postgres:
            # Bounded waits: a connection whose peer went silent must fail (and the batch
            # be retried), not hang the worker.
            self.engine: AsyncEngine = create_async_engine(
                url, pool_size=pool_size, pool_pre_ping=True,
                # JIT compiles a query whose estimated cost passes jit_above_cost: for
                # the batch statements (short, repeated) that is 100-250 ms of compiling
                # for a query that runs in one, whenever the estimate is off.
                connect_args={"timeout": 10, "command_timeout": 60,
                              "server_settings": {"jit": "off"}},
            )
        else:
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_async_engine(url, connect_args={"timeout": 30})
            sync = self.engine.sync_engine

            @event.listens_for(sync, "connect")
            def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                for pragma in self._pragmas():
                    cur.execute(pragma)
                cur.close()

            @event.listens_for(sync, "begin")
            def _on_begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    async def open(self, *, migrate_schema: bool = True) -> int:
        """Connect and migrate the schema; return the schema version.

        ``migrate_schema=False`` is for commands that only read (``explain``): the
        database is left as it is, and one whose schema is not this flagman's is refused
        with a message saying what to do, rather than migrated behind the reader's back.
        """
        try:
            async with self.engine.begin() as conn:
                version = await self.migrate_on(conn, migrate_schema=migrate_schema)
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(
                f"database {self.safe_url}: {_one_line(exc)}", transient=_transient(exc)
            ) from exc
        if self._checkpoint_s is not None and self._checkpointer is None:
            self._checkpointer = asyncio.ensure_future(self._checkpoints(self._checkpoint_s))
        return version

    async def migrate_on(self, conn: AsyncConnection, *, migrate_schema: bool = True) -> int:
        """Migrate (or only check) the schema within ``conn``'s transaction; a schema
        that is not this flagman's comes out as a ``StoreError`` that retrying cannot
        fix."""
        try:
            version: int = await conn.run_sync(migrate if migrate_schema else check_version)
        except SchemaMismatch as exc:
            raise StoreError(f"database {self.safe_url}: {exc}", transient=False) from exc
        return version

    async def _checkpoints(self, every_s: float) -> None:
        """Copy the write-ahead log into the database file, off the batch's path.

        SQLite's automatic checkpoint runs inside the commit that crosses 1000 pages of
        log: that batch then waits for the copy and an fsync (tens to hundreds of ms,
        growing with the database). Here a PASSIVE checkpoint runs every ``every_s`` in
        a thread with a connection of its own; it never blocks the writer, and the
        writer never waits for it.
        """
        assert self._db_path is not None
        conn = sqlite3.connect(self._db_path, timeout=30, check_same_thread=False)
        try:
            while True:
                await asyncio.sleep(every_s)
                job = asyncio.ensure_future(asyncio.to_thread(_checkpoint, conn))
                try:
                    error = await asyncio.shield(job)
                except asyncio.CancelledError:
                    await job  # the thread finishes with the connection before it closes
                    raise
                if error:
                    log.debug("checkpoint skipped", error=error)  # e.g. busy: next round
        finally:
            conn.close()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._thread is not None:
            raw, self._raw = self._raw, None
            if raw is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, raw.close)
            self._thread.shutdown(wait=True)
            self._thread = None
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection whose errors come out as ``StoreError``."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (DBAPIError, SQLAlchemyError, OSError) as exc:
            raise _store_error(exc) from exc

    async def run_batch(self, body: Callable[[SqlTx], Awaitable[T]]) -> T:
        """Run a batch body in one transaction; errors come out as ``StoreError``.

        On PostgreSQL the body runs on the event loop over asyncpg. On SQLite it runs in
        the store's single thread on a ``sqlite3`` connection of its own (``_DirectTx``):
        the body must only await the transaction's own methods.
        """
        if self.is_postgres or self._db_path in (None, "", ":memory:"):
            async with self.transaction() as tx:
                return await body(tx)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self._run_direct, body)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "flagman-sqlite")
        return self._thread

    def _run_direct(self, body: Callable[[SqlTx], Awaitable[T]]) -> T:
        try:
            raw = self._raw
            if raw is None:
                assert self._db_path is not None
                raw = sqlite3.connect(self._db_path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
                for pragma in self._pragmas(cache_kib=self._batch_cache_kib):
                    raw.execute(pragma)
                self._raw = raw
            raw.execute("BEGIN IMMEDIATE")
            try:
                result: T = _drive(body(_DirectTx(self, raw)))
                raw.execute("COMMIT")
                return result
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    def _pragmas(self, cache_kib: int = SQLITE_CACHE_MIB * 1024) -> list[str]:
        out = ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=30000",
               f"PRAGMA cache_size=-{cache_kib}"]
        if self._checkpoint_s is not None:
            out.append("PRAGMA wal_autocheckpoint=0")
        return out

    @contextlib.asynccontextmanager
    async def transaction(self, *, commit: bool = True) -> AsyncIterator[SqlTx]:
        """One transaction; errors come out as ``StoreError``. ``commit=False`` rolls it
        back at the end whatever it did (a dry run)."""
        try:
            async with self.engine.begin() as conn:
                yield SqlTx(self, conn)
                if not commit:
                    await conn.rollback()
        except (DBAPIError, SQLAlchemyError, OSError) as exc:
            raise _store_error(exc) from exc

    # -- outside the hot path ---------------------------------------------------
    async def pending(self, topic: str, partitions: Sequence[int]) -> list[PendingCommand]:
        """Commands stored but not known to be published, caused on these partitions."""
        if not partitions:
            return []
        keep = set(partitions)
        async with self._reading() as conn:
            rows = await conn.execute(
                text(
                    "SELECT f.command_id, f.workflow, f.command, f.cmd_partition, f.scan_from, "
                    "f.fid, u.source_partition FROM unpublished u JOIN firings f ON f.fid = u.fid "
                    "WHERE u.source_topic = :t ORDER BY u.fid"
                ),
                {"t": topic},
            )
            return [
                PendingCommand(r[0], r[1], r[2], r[3], r[4], r[5])
                for r in rows.fetchall()
                if r[6] in keep
            ]

    async def mark_published(self, fids: Sequence[int]) -> None:
        async with self.transaction() as tx:
            await tx.mark_published(fids)

    async def load_triggers(self, since_revision: int = 0) -> list[TriggerRow]:
        async with self._reading() as conn:
            rows = await conn.execute(
                text(
                    "SELECT t.id, t.version, t.digest, t.definition, t.active, t.revision, "
                    "t.applied_ms, t.min_seq, coalesce(b.version, 0) FROM triggers t "
                    "LEFT JOIN trigger_backfill b ON b.id = t.id "
                    "WHERE t.revision > :r ORDER BY t.revision"
                ),
                {"r": since_revision},
            )
            return [
                TriggerRow(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5], r[6], r[7], r[8])
                for r in rows.fetchall()
            ]

    async def trigger_pages(
        self, since_revision: int = 0, page: int = 10_000
    ) -> AsyncIterator[list[StoredTrigger]]:
        """The rows changed after a revision, in revision order, a page at a time (one
        short read each: a million rows never sit in memory at once). A row changed
        meanwhile moves to a higher revision, so it comes in a later page."""
        sql = text(
            "SELECT t.id, t.version, t.active, t.revision, t.min_seq, coalesce(b.version, 0), "
            "t.compiled, CASE WHEN t.compiled IS NULL THEN t.definition END FROM triggers t "
            "LEFT JOIN trigger_backfill b ON b.id = t.id "
            "WHERE t.revision > :r ORDER BY t.revision LIMIT :n"
        )
        rev = since_revision
        while True:
            async with self._reading() as conn:
                rows = (await conn.execute(sql, {"r": rev, "n": page})).fetchall()
            if not rows:
                return
            yield [StoredTrigger(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]
            if len(rows) < page:
                return
            rev = rows[-1][3]

    async def mark_backfilled(self, versions: dict[str, int]) -> None:
        """Record that these versions' look-back was evaluated (a version only ever
        rises; ids of no stored trigger are left out): one statement per 50k triggers
        (a million single-row updates took 10 s and a quarter GiB of params)."""
        items = iter(versions.items())
        upsert = ("ON CONFLICT (id) DO UPDATE SET version = excluded.version "
                  "WHERE trigger_backfill.version < excluded.version")
        async with self.transaction() as tx:
            while part := list(itertools.islice(items, 50_000)):
                if self.is_postgres:
                    await tx.c.exec_driver_sql(
                        "INSERT INTO trigger_backfill (id, version) SELECT u.i, u.v "
                        "FROM unnest($1::text[], $2::int[]) AS u(i, v) "
                        "JOIN triggers t ON t.id = u.i " + upsert,
                        ([k for k, _ in part], [v for _, v in part]),
                    )
                else:
                    await tx.c.exec_driver_sql(
                        "INSERT INTO trigger_backfill (id, version) SELECT j.key, j.value "
                        # "WHERE true": SQLite's parser needs a WHERE before an upsert's
                        # ON CONFLICT in INSERT ... SELECT
                        "FROM json_each(?) AS j JOIN triggers t ON t.id = j.key WHERE true "
                        + upsert,
                        (json.dumps(dict(part)),),
                    )

    async def trigger_revision(self) -> int:
        async with self._reading() as conn:
            row = (await conn.execute(text("SELECT coalesce(max(revision), 0) FROM triggers"))).first()
            return int(row[0]) if row else 0


def _store_error(exc: BaseException) -> StoreError:
    """A driver or SQLAlchemy error as a ``StoreError``: one line, whether retrying can
    help, and whether a constraint refused a row."""
    if isinstance(exc, sqlite3.Error):  # the direct SQLite path
        return StoreError(_one_line(exc), transient=_sqlite_transient(exc),
                          constraint=isinstance(exc, sqlite3.IntegrityError))
    return StoreError(_one_line(exc), transient=_transient(exc),
                      constraint=isinstance(exc, IntegrityError))


def _transient(exc: BaseException) -> bool:
    """Whether retrying can help: anything but statement and data errors."""
    from sqlalchemy.exc import (
        ArgumentError,
        CompileError,
        DataError,
        NotSupportedError,
        ProgrammingError,
    )

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return not isinstance(exc, ProgrammingError | DataError | NotSupportedError | CompileError | ArgumentError)


def _sqlite_transient(exc: sqlite3.Error) -> bool:
    """Whether retrying can help, for errors of the direct SQLite path: busy or locked
    databases, I/O, a full disk (``OperationalError``), and a constraint refusing a row
    (``IntegrityError``: the retry starts from the stored state, as on the SQLAlchemy
    path, and the worker gives up after a few in a row); not statement or data errors."""
    return isinstance(exc, sqlite3.OperationalError | sqlite3.IntegrityError)


def _one_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc)
    return " ".join(msg.split())[:300] or type(exc).__name__
