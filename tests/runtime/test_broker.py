"""The embedded broker and the tansu workarounds, against the real tansu binary."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from runtime import broker as broker_module
from runtime.broker import BrokerError, EmbeddedBroker, ensure_topics
from runtime.kafka_compat import partition_end, producer_kwargs, read_to_end


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(log_dir=tmp_path) as b:
        yield b


@pytest.fixture
async def producer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **producer_kwargs())
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc (R, S, T, Z...), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_produce_and_consume(broker: EmbeddedBroker, producer: AIOKafkaProducer) -> None:
    assert broker.bootstrap.startswith("127.0.0.1:")
    assert process_state(broker.pid) not in (None, "Z")
    assert broker.log_path is not None and broker.log_path.exists()
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 1})
    await producer.send_and_wait(topic, b"hello", key=b"k", headers=[("h", b"1")])

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        # tansu holds a first JoinGroup for about half the session timeout.
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 15)
    finally:
        await consumer.stop()
    assert (record.key, record.value, list(record.headers)) == (b"k", b"hello", [("h", b"1")])


async def test_ensure_topics_is_idempotent(broker: EmbeddedBroker) -> None:
    a, b = topic_name(), topic_name()
    assert sorted(await ensure_topics(broker.bootstrap, {a: 3, b: 1})) == sorted([a, b])
    assert await ensure_topics(broker.bootstrap, {a: 3, b: 1}) == []
    # An existing topic keeps its partition count.
    assert await ensure_topics(broker.bootstrap, {a: 5}) == []

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        assert consumer.partitions_for_topic(a) == {0, 1, 2}
        assert consumer.partitions_for_topic(b) == {0}
    finally:
        await consumer.stop()


async def test_ensure_topics_unreachable_broker_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerError, match="cannot create topics"):
        await ensure_topics(f"127.0.0.1:{port}", {"x": 1}, request_timeout_ms=1000)


async def test_pause_holds_requests_until_resume(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 1})
    broker.pause()
    await wait_for(lambda: process_state(broker.pid) == "T")
    send = asyncio.ensure_future(producer.send_and_wait(topic, b"during-pause"))
    done, _ = await asyncio.wait({send}, timeout=0.5)
    assert not done, "a paused broker must not answer"
    broker.resume()
    await wait_for(lambda: process_state(broker.pid) != "T")
    metadata = await asyncio.wait_for(send, 15)
    assert metadata.offset == 0


async def test_stop_ends_a_paused_broker() -> None:
    b = EmbeddedBroker()
    await b.start()
    pid = b.pid
    b.pause()
    await b.stop()
    assert process_state(pid) is None
    await b.stop()  # idempotent
    with pytest.raises(BrokerError, match="not started"):
        _ = b.pid


async def test_start_retries_when_the_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = broker_module._free_port
    monkeypatch.setattr(broker_module, "_free_port", lambda host: next(ports, None) or real(host))
    try:
        async with EmbeddedBroker(log_dir=tmp_path) as b:
            assert b.bootstrap != f"127.0.0.1:{taken.getsockname()[1]}"
            assert await ensure_topics(b.bootstrap, {"ok": 1}) == ["ok"]
    finally:
        taken.close()


async def test_start_timeout_names_the_log(tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 60\n")
    hang.chmod(0o755)
    b = EmbeddedBroker(binary=str(hang), log_dir=tmp_path / "logs", start_timeout=0.5)
    with pytest.raises(BrokerError, match=r"did not start within 0\.5s; see .*tansu-\d+\.log"):
        await b.start()
    with pytest.raises(BrokerError):
        _ = b.pid  # the hung process was cleaned up


async def test_start_failure_without_log_dir(tmp_path: Path) -> None:
    b = EmbeddedBroker(binary="/bin/false", start_timeout=5)
    with pytest.raises(BrokerError, match="pass log_dir"):
        await b.start()


async def produce_batches(
    producer: AIOKafkaProducer, topic: str, batches: int, per_batch: int
) -> list[bytes]:
    """Several multi-record batches per partition: what trips tansu's end_offsets."""
    values: list[bytes] = []
    for b in range(batches):
        for i in range(per_batch):
            value = f"{b}-{i}".encode()
            await producer.send(topic, value, partition=i % 3)
            values.append(value)
        await producer.flush()
    return values


async def test_read_to_end_is_complete_across_partitions(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 3})
    values = await produce_batches(producer, topic, batches=4, per_batch=12)

    records = await read_to_end(broker.bootstrap, topic)

    assert sorted(r.value for r in records if r.value) == sorted(values)
    assert {r.partition for r in records} == {0, 1, 2}
    assert records == sorted(records, key=lambda r: (r.partition, r.offset))
    # partition_end is a lower bound of the true end, whatever end_offsets says.
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        for p in range(3):
            true_end = len(values) // 3
            assert 0 < await partition_end(consumer, TopicPartition(topic, p)) <= true_end
    finally:
        await consumer.stop()


async def test_tansu_end_offsets_fall_short_of_the_high_watermark(
    broker: EmbeddedBroker, producer: AIOKafkaProducer
) -> None:
    """Pins the quirk read_to_end works around; if this fails, tansu was fixed."""
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 3})
    values = await produce_batches(producer, topic, batches=3, per_batch=9)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        listed = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    # Three batches of three records: the last one starts at 6, so tansu says 7.
    assert len(values) // 3 == 9
    assert listed == 7


async def test_read_to_end_from_offsets(broker: EmbeddedBroker, producer: AIOKafkaProducer) -> None:
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 3})
    await produce_batches(producer, topic, batches=2, per_batch=6)  # 4 records per partition

    records = await read_to_end(broker.bootstrap, topic, from_offsets={0: 3, 2: 4})

    assert [(r.partition, r.offset) for r in records] == [(0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
    # Past the end: nothing (tansu and Kafka answer differently, read_to_end agrees).
    records = await read_to_end(broker.bootstrap, topic, from_offsets={0: 99, 1: 3, 2: 0})
    assert [(r.partition, r.offset) for r in records] == [(1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
    with pytest.raises(ValueError, match="no partition"):
        await read_to_end(broker.bootstrap, topic, from_offsets={7: 0})


async def test_read_to_end_of_empty_or_missing_topic_is_prompt(broker: EmbeddedBroker) -> None:
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 3})
    started = time.monotonic()
    assert await read_to_end(broker.bootstrap, topic) == []
    assert await read_to_end(broker.bootstrap, topic_name()) == []
    assert time.monotonic() - started < 5


async def test_read_to_end_gives_up_on_a_hung_broker(broker: EmbeddedBroker) -> None:
    topic = topic_name()
    await ensure_topics(broker.bootstrap, {topic: 1})
    consumer_kwargs = {"request_timeout_ms": 2000, "metadata_max_age_ms": 1000}
    task = asyncio.ensure_future(
        read_to_end(broker.bootstrap, topic, client_kwargs=consumer_kwargs, timeout=1.0)
    )
    broker.pause()
    try:
        with pytest.raises(BrokerError, match="not read to the end"):
            await asyncio.wait_for(task, 20)
    finally:
        broker.resume()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
async def test_process_has_its_own_group(broker: EmbeddedBroker) -> None:
    assert os.getpgid(broker.pid) == broker.pid


def test_the_embedded_broker_gets_a_short_fetch_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cli import on_embedded_broker
    from runtime.config import WorkerConfig
    from runtime.kafka_compat import TANSU_FETCH_WAIT_MS

    monkeypatch.delenv("FLAGMAN_FETCH_WAIT_MS", raising=False)
    cfg = on_embedded_broker(WorkerConfig(), "127.0.0.1:19092")
    assert (cfg.bootstrap, cfg.fetch_wait_ms) == ("127.0.0.1:19092", TANSU_FETCH_WAIT_MS)
    assert WorkerConfig().fetch_wait_ms > TANSU_FETCH_WAIT_MS  # Kafka long-polls: no need

    monkeypatch.setenv("FLAGMAN_FETCH_WAIT_MS", "250")
    assert on_embedded_broker(WorkerConfig(), "127.0.0.1:19092").fetch_wait_ms == 250
