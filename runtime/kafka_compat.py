"""Small, named workarounds that keep flagman correct on both Apache Kafka and tansu.

The embedded broker (tansu, see :mod:`runtime.broker`) speaks the Kafka
protocol but differs in a few answers. Each difference flagman relies on is
handled here, in one place, and tested against the real broker:

* tansu rejects idempotent producers: see :func:`producer_kwargs`.
* tansu's ListOffsets "latest" answer is the first offset of the partition's
  last record batch plus one, not the high watermark: see :func:`partition_end`
  and :func:`read_to_end`.
* tansu answers a fetch that found no data only when its wait is over, even if a
  record arrives meanwhile (Kafka answers as soon as one does): see
  :data:`TANSU_FETCH_WAIT_MS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from runtime.broker import BrokerError

_POLL_MS = 200

TANSU_FETCH_WAIT_MS = 10
"""The worker's fetch wait on the embedded broker (``FLAGMAN_FETCH_WAIT_MS`` otherwise).

Kafka holds a fetch that found nothing for up to its wait and answers as soon as a
record arrives: a long wait costs nothing. tansu 0.6 holds it for the whole wait, so
a signal arriving at an idle worker waits half of it on average (measured: p50 26 ms
at 100 ms, 3 ms at 10 ms). Polling every 10 ms costs the idle broker ~3% of a core
with three partitions. ``flagman run`` and the benchmark use this with tansu.
"""


def producer_kwargs() -> dict[str, Any]:
    """Producer settings that both Apache Kafka and tansu accept.

    tansu refuses InitProducerId, so idempotence (aiokafka's default is off,
    but other clients default to on) must stay off. Exactly-once for commands
    therefore rests on flagman's deterministic ``command_id`` and its outbox,
    not on the producer. ``acks="all"`` keeps a sent command durable on a
    replicated cluster.
    """
    return {"enable_idempotence": False, "acks": "all"}


async def partition_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """A lower bound of ``tp``'s high watermark, exact on Apache Kafka.

    On Kafka, ``end_offsets`` is the high watermark. On tansu it is the first
    offset of the last record batch plus one, which is short whenever that
    batch holds more than one record; the high watermark carried by fetch
    responses (``consumer.highwater(tp)``) is right on both. So the answer is
    the larger of the two, and a reader that must reach the end keeps fetching
    until a fetch returns nothing and its position has reached the fetch high
    watermark, as :func:`read_to_end` does.
    """
    listed: int = (await consumer.end_offsets([tp]))[tp]
    fetched = consumer.highwater(tp) if tp in consumer.assignment() else None
    return max(listed, fetched if fetched is not None else 0)


async def read_to_end(
    bootstrap: str,
    topic: str,
    *,
    from_offsets: Mapping[int, int] | None = None,
    client_kwargs: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
    only_listed: bool = False,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from ``from_offsets`` (partition -> offset) to its end.

    Partitions missing from ``from_offsets``, or given an offset below the
    log start, are read from the log start; one given an offset past its end
    yields nothing. Reads all partitions with manual assignment and no consumer group,
    so nothing is committed. "The end" is the high watermark seen in fetch
    responses (the last stable offset under ``isolation_level="read_committed"``);
    records produced meanwhile may or may not be included. Returns ``[]`` for
    a topic that does not exist. Records come sorted by (partition, offset).
    With ``only_listed`` just the partitions in ``from_offsets`` are read.
    Raises :class:`~runtime.broker.BrokerError` if that takes longer than
    ``timeout`` seconds (an unreachable or hung broker).
    """
    kwargs: dict[str, Any] = {
        # Short broker-side waits: an empty partition answers after this long.
        "fetch_max_wait_ms": 100,
        **(client_kwargs or {}),
        "enable_auto_commit": False,
        # Only reached for an offset past the end (earlier ones are clamped
        # below): tansu answers such a fetch with no records, Kafka with
        # OFFSET_OUT_OF_RANGE; "latest" makes both read nothing there.
        "auto_offset_reset": "latest",
    }
    committed_only = kwargs.get("isolation_level") == "read_committed"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **kwargs)
    records: list[ConsumerRecord[bytes, bytes]] = []
    pending: set[TopicPartition] = set()
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
            await consumer.topics()  # fresh metadata: the topic may have just been created
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                return []
            unknown = set(from_offsets or {}) - partitions
            if unknown:
                raise ValueError(f"{topic} has no partition(s) {sorted(unknown)}")
            if only_listed:
                partitions = set(from_offsets or {})
                if not partitions:
                    return []
            pending = {TopicPartition(topic, p) for p in partitions}
            starts = await consumer.beginning_offsets(list(pending))
            consumer.assign(list(pending))
            for tp in pending:
                consumer.seek(tp, max(starts[tp], (from_offsets or {}).get(tp.partition, 0)))
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
                for recs in batch.values():
                    records.extend(recs)
                for tp in list(pending):
                    hw = (
                        consumer.last_stable_offset(tp)
                        if committed_only
                        else consumer.highwater(tp)
                    )
                    # None: no fetch has answered for tp yet, so its end is unknown.
                    if hw is not None and await consumer.position(tp) >= hw:
                        pending.discard(tp)
    except TimeoutError as exc:
        lagging = sorted(tp.partition for tp in pending) or "metadata"
        raise BrokerError(
            f"{topic} on {bootstrap}: not read to the end within {timeout:g}s (lagging: {lagging})"
        ) from exc
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records
