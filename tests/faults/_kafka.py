"""Kafka side of the fault suite: producing (with positions), reading commands and
dead letters, the consumer group's committed offsets, resetting them, waiting for the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.harness import Record, command_ids, produce, read_topic, wait_until

MiB = 1 << 20


async def produce_at(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    partition: int | None = None,
    max_request_size: int = 8 * MiB,
) -> list[tuple[int, int]]:
    """Send records, wait for every ack; return each record's ``(partition, offset)``
    (large requests allowed: hostile records include oversized ones)."""
    return await produce(bootstrap, topic, records, partition=partition,
                         max_request_size=max_request_size)


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
    async def done() -> bool:
        if alive is not None:
            alive()
        if not set(await command_ids(bootstrap, commands_topic)) >= expected:
            return False
        c = await committed_offsets(bootstrap, group, signals_topic)
        return all(c.get(p, 0) >= e for p, e in ends.items())

    await wait_until(done, timeout=timeout, every=1.0, what="every expected command and commit")
