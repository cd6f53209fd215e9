"""The latency floor of the broker: a pass-through process in the worker's place.

``python -m bench.pipe BOOTSTRAP SOURCE DEST GROUP FETCH_WAIT_MS`` copies every record of
SOURCE to DEST (same partition, same key, value and timestamp) with the worker's client
settings and batch cycle, and nothing else: no parsing, no store, no matching. Fetched
batch -> wait for the previous batch's acks -> commit its offsets in the background ->
hand this batch to the producer (``linger_ms`` 2, ``acks=all``).

Measured like the worker (same producer, rate and collector), its latency is what any
service on this broker and machine pays for two hops and a consumer group, so the
worker's latency reads as the floor plus what flagman adds. It prints ``assigned`` once
it owns partitions.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener


class _Announce(ConsumerRebalanceListener):  # type: ignore[misc]
    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            print("assigned", flush=True)


async def pipe(bootstrap: str, source: str, dest: str, group: str, fetch_wait_ms: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms,
        max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=False, linger_ms=2,
                                max_batch_size=1 << 20, max_request_size=4 << 20)
    await producer.start()
    await consumer.start()
    consumer.subscribe([source], listener=_Announce())
    inflight: list[asyncio.Future[Any]] = []
    offsets: dict[Any, int] = {}
    committing: asyncio.Future[Any] | None = None
    try:
        while True:
            got = await consumer.getmany(timeout_ms=500, max_records=5000)
            if inflight:
                await asyncio.gather(*inflight)
                inflight = []
                if committing is not None:
                    await committing
                committing = asyncio.ensure_future(consumer.commit(offsets))
            for tp, recs in got.items():
                batch = producer.create_batch()
                for r in recs:
                    # full (1 MiB; one record always fits an empty one): send, go on
                    while batch.append(key=r.key, value=r.value, timestamp=r.timestamp) is None:
                        inflight.append(await producer.send_batch(batch, dest, partition=tp.partition))
                        batch = producer.create_batch()
                inflight.append(await producer.send_batch(batch, dest, partition=tp.partition))
            offsets = {tp: recs[-1].offset + 1 for tp, recs in got.items() if recs}
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    bs, src, dst, grp, wait = sys.argv[1:6]
    asyncio.run(pipe(bs, src, dst, grp, int(wait)))
