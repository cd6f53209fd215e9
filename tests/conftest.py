"""Shared fixtures: a real broker and real databases, chosen by the environment.

Broker: ``FLAGMAN_TEST_KAFKA=host:port`` uses an external cluster; else, where a Docker
engine answers, testcontainers' Kafka; else the embedded tansu broker (this machine).
Databases: every integration test body runs against SQLite and PostgreSQL
(``FLAGMAN_TEST_PG``, default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``);
each PostgreSQL test gets a fresh database, created and dropped around it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

PG_ADMIN = os.environ.get("FLAGMAN_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the broker under test (one per test session)."""
    external = os.environ.get("FLAGMAN_TEST_KAFKA")
    if external:
        yield external
        return
    if _docker_available():  # pragma: no cover - no Docker engine on the CI machine
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from runtime.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(broker.start())
    try:
        yield broker.bootstrap
    finally:
        loop.run_until_complete(broker.stop())
        loop.close()


@dataclass
class Topics:
    """Per-test names: topics and consumer group never shared between tests."""

    signals: str
    commands: str
    dlq: str
    group: str

    def env(self) -> dict[str, str]:
        return {
            "FLAGMAN_SIGNAL_TOPICS": self.signals,
            "FLAGMAN_COMMAND_TOPIC": self.commands,
            "FLAGMAN_DLQ_TOPIC": self.dlq,
            "FLAGMAN_GROUP": self.group,
        }


@pytest.fixture
def topics() -> Topics:
    u = uuid.uuid4().hex[:10]
    return Topics(f"t.{u}.signals", f"t.{u}.commands", f"t.{u}.dlq", f"g.{u}")


async def _pg_exec(sql: str) -> None:
    import asyncpg

    url = PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_url_for(dbname: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{dbname}"


@pytest_asyncio.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test."""
    name = f"flagman_t_{uuid.uuid4().hex[:12]}"
    await _pg_exec(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The same test body against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'flagman.db'}"
        return
    name = f"flagman_t_{uuid.uuid4().hex[:12]}"
    await _pg_exec(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url_for(name)
    finally:
        await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _reap_worker_processes() -> Iterator[None]:
    """A failed test must not leave worker processes running into the next one."""
    yield
    from tests.harness import WorkerProc

    WorkerProc.reap_all()
