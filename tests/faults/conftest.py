"""Fixtures of the fault suite: a database of a chosen kind, made on request.

The shared ``db_url`` fixture runs a body on both backends; fault scenarios pick
their backends per form (the short form often one, the long form both), so they ask
this factory instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import _pg_exec, pg_url_for
from tests.harness import WorkerProc

MakeDb = Callable[[str], Awaitable[str]]


@pytest_asyncio.fixture
async def make_db(tmp_path: Path) -> AsyncIterator[MakeDb]:
    """``await make_db("sqlite" | "postgresql")`` gives a fresh database URL."""
    made: list[str] = []

    async def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'flagman-{uuid.uuid4().hex[:6]}.db'}"
        assert kind == "postgresql", kind
        name = f"flagman_f_{uuid.uuid4().hex[:12]}"
        await _pg_exec(f'CREATE DATABASE "{name}"')
        made.append(name)
        return pg_url_for(name)

    yield make
    for name in made:
        await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MakeWorker = Callable[..., WorkerProc]


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[MakeWorker]:
    """``make_worker(bootstrap, db_url, env, name="worker")``: a ``WorkerProc`` (not yet
    started) that is killed at teardown if a failing test left it running."""
    made: list[WorkerProc] = []

    def make(bootstrap: str, db: str, env: dict[str, str], name: str = "worker") -> WorkerProc:
        w = WorkerProc(bootstrap, db, env, tmp_path / f"{name}.log")
        made.append(w)
        return w

    yield make
    for w in made:
        if w.alive():
            w.kill9()
