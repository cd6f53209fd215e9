"""Databases for a run, and loading a generated trigger set into one.

Loading goes through flagman's own ``apply_definitions`` for a sample (timed: that is
the apply rate reported), then writes the remaining triggers with one bulk insert of
the very rows ``apply`` writes: same ``definition`` text, ``digest``, ``min_seq``. The
sample is read back and compared with what the bulk path would have written, so the
shortcut cannot drift from ``apply`` unnoticed. (At several ms per trigger, applying a
million triggers one by one would take longer than the whole benchmark.)
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import rfc8785
from sqlalchemy import text

from runtime.apply import apply_definitions
from runtime.store.sql import SqlStore
from triggers import TriggerDef, compact_form

from .workload import Workload

PG_ADMIN_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
_CHUNK = 5000


class BenchDb:
    """A fresh database: a SQLite file under ``work``, or a new PostgreSQL database."""

    def __init__(self, kind: str, work: Path, pg_admin: str = PG_ADMIN_DEFAULT) -> None:
        self.kind = kind
        self.work = work
        self.pg_admin = pg_admin
        self.name = f"flagman_bench_{uuid.uuid4().hex[:10]}"
        self.url = ""

    async def create(self) -> str:
        if self.kind == "sqlite":
            path = self.work / f"{self.name}.db"
            self.url = f"sqlite+aiosqlite:///{path}"
        else:
            await self._pg(f'CREATE DATABASE "{self.name}"')
            base = self.pg_admin.rpartition("/")[0]
            self.url = f"{base}/{self.name}"
        return self.url

    async def drop(self) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (self.work / f"{self.name}.db{suffix}").unlink(missing_ok=True)
        elif self.url:
            await self._pg(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def _pg(self, sql: str) -> None:
        conn = await asyncpg.connect(self.pg_admin.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


def _row(canon: dict[str, Any]) -> tuple[str, str, str]:
    """(digest, definition text, compact form) exactly as ``apply`` stores them."""
    digest = hashlib.sha256(rfc8785.dumps(canon)).hexdigest()
    return digest, json.dumps(canon, sort_keys=True), compact_form(canon)


async def load_triggers(url: str, wl: Workload, *, api_sample: int = 1000) -> dict[str, Any]:
    """Store all of ``wl``'s triggers; return timings (apply rate, bulk load)."""
    store = SqlStore(url)
    await store.open()
    try:
        defs = wl.definitions()
        sample = [d for _, d in zip(range(api_sample), defs, strict=False)]
        t0 = time.perf_counter()
        checked = [TriggerDef.from_canonical(d) for d in sample]
        t1 = time.perf_counter()
        await apply_definitions(store, checked)
        t2 = time.perf_counter()
        async with store.transaction() as tx:
            rows = (await tx.c.execute(text(
                "SELECT id, digest, definition, min_seq, revision, compiled FROM triggers"))).fetchall()
        stored = {r[0]: r for r in rows}
        for d in sample:
            r = stored[d["id"]]
            if (r[1], r[2], r[5]) != _row(d):
                raise RuntimeError(f"bulk rows would differ from apply's for {d['id']}")
        min_seq = stored[sample[0]["id"]][3] if sample else 1
        rev = max((r[4] for r in rows), default=0)
        n_bulk = await _bulk(store, defs, min_seq, rev)
        t3 = time.perf_counter()
    finally:
        await store.close()
    n = len(sample)
    return {
        "triggers": n + n_bulk,
        "api_sample": n,
        "validate_ms_per_trigger": round((t1 - t0) / n * 1000, 3) if n else None,
        "apply_ms_per_trigger": round((t2 - t1) / n * 1000, 3) if n else None,
        "bulk_load_s": round(t3 - t2, 2),
    }


async def _bulk(store: SqlStore, defs: Iterator[dict[str, Any]], min_seq: int, rev: int) -> int:
    now = int(time.time() * 1000)
    n = 0
    trig_sql = text(
        "INSERT INTO triggers (id, version, digest, definition, active, revision, applied_ms, "
        "min_seq, backfilled, compiled) VALUES (:i, 1, :d, :def, :a, :r, :t, :m, 0, :c)")
    ver_sql = text(
        "INSERT INTO trigger_versions (id, version, digest, definition, action, applied_ms) "
        "VALUES (:i, 1, :d, :def, 'created', :t)")
    async with store.transaction() as tx:
        chunk: list[dict[str, Any]] = []
        for d in defs:
            rev += 1
            digest, body, compiled = _row(d)
            chunk.append({"i": d["id"], "d": digest, "def": body, "a": True, "r": rev, "t": now,
                          "m": min_seq, "c": compiled})
            if len(chunk) >= _CHUNK:
                await tx.c.execute(trig_sql, chunk)
                await tx.c.execute(ver_sql, chunk)
                n += len(chunk)
                chunk = []
        if chunk:
            await tx.c.execute(trig_sql, chunk)
            await tx.c.execute(ver_sql, chunk)
            n += len(chunk)
    return n
