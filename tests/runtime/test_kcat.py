"""scripts/kcat: the system kcat, run with a librdkafka new enough for tansu."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.broker import EmbeddedBroker, ensure_topics
from runtime.kafka_compat import read_to_end

KCAT = Path(__file__).resolve().parents[2] / "scripts" / "kcat"

needs_kcat = pytest.mark.skipif(
    shutil.which("kcat") is None,
    reason="system kcat is not installed (apt-get install kcat)",
)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(log_dir=tmp_path) as b:
        yield b


def kcat_env(tmp_path: Path) -> dict[str, str]:
    # Use this interpreter's confluent-kafka, and a private cache directory.
    return {**os.environ, "FLAGMAN_PYTHON": sys.executable, "XDG_CACHE_HOME": str(tmp_path)}


async def run(args: list[str], env: dict[str, str], stdin: bytes = b"") -> str:
    proc = await asyncio.to_thread(
        subprocess.run, args, input=stdin, capture_output=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


@needs_kcat
async def test_kcat_produces_and_consumes_on_the_embedded_broker(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = f"kcat-{uuid.uuid4().hex[:12]}"
    await ensure_topics(broker.bootstrap, {topic: 1})
    env = kcat_env(tmp_path)
    base = [str(KCAT), "-b", broker.bootstrap, "-t", topic]

    await run([*base, "-P", "-K", ":"], env, stdin=b"k1:v1\nk2:v2\nk3:v3\n")
    out = await run([*base, "-C", "-e", "-o", "beginning", "-f", "%k=%s@%o\\n"], env)

    assert out.splitlines() == ["k1=v1@0", "k2=v2@1", "k3=v3@2"]
    # What kcat wrote is what flagman's own reader sees.
    records = await read_to_end(broker.bootstrap, topic)
    assert [(r.key, r.value) for r in records] == [(b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3")]
    link = next((tmp_path / "flagman" / "librdkafka").glob("*/librdkafka.so.1"))
    assert "confluent_kafka.libs" in os.readlink(link)


def test_missing_kcat_says_how_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.run(
        ["/bin/bash", str(KCAT), "-V"],
        capture_output=True,
        env={"PATH": str(empty), "HOME": str(tmp_path)},
        timeout=30,
    )
    assert proc.returncode == 127
    assert "apt-get install kcat" in proc.stderr.decode()
    assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_wrapper_is_executable() -> None:
    assert os.access(KCAT, os.X_OK)
