"""Load generation and observation on Kafka: a fast producer and a command collector.

Both use confluent-kafka (librdkafka): its I/O runs in C threads, so the benchmark's
own clients take as little CPU as possible from the worker they measure, on a machine
whose two cores are shared with the broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from .workload import Record

CMD_HEADER = "flagman-command-id"

LINGER_MS = 5
"""The bench producers' ``linger.ms`` at any rate: the default of librdkafka (since 1.5)
and of the Java client (since Kafka 4.0, KIP-1030), so what a producing job does unless
tuned. A signal's send time is taken before it lingers, so latency includes the linger.
(At 1 ms, as before, the producer could send up to 5x as many requests; the embedded
broker, on the same two cores, fell seconds behind at 2k/s.)"""


def _producer(bootstrap: str, linger_ms: int) -> Producer:
    # tansu rejects idempotent producers (see runtime.kafka_compat).
    return Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": False, "acks": "all",
        "linger.ms": linger_ms, "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576,
    })


@dataclass
class Produced:
    """What a producer run did: per partition the end offset, per signal id its send time."""

    first_ts: float = 0.0
    last_ts: float = 0.0
    count: int = 0
    errors: int = 0
    ends: dict[int, int] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)

    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self.errors += 1
            return
        p, o = msg.partition(), msg.offset()  # type: ignore[attr-defined]
        if o + 1 > self.ends.get(p, 0):
            self.ends[p] = o + 1


def produce(bootstrap: str, topic: str, records: Sequence[Record], *,
            rate: float | None = None, keep_times: bool = False,
            linger_ms: int = LINGER_MS) -> Produced:
    """Send ``records`` in order, as fast as possible or at ``rate`` records/s; blocks until
    every record is acknowledged. ``keep_times`` remembers the send time of each signal id
    (for latency: a command's latency counts from its last bound signal's send time)."""
    out = Produced()
    prod = _producer(bootstrap, linger_ms)
    cb = out._on_delivery
    start = time.time()
    out.first_ts = start
    for i, rec in enumerate(records):
        if rate:
            due = start + i / rate
            now = time.time()
            if due > now:
                prod.poll(0)
                time.sleep(due - now)
        if keep_times and rec.sig_id is not None and rec.sig_id not in out.sent_at:
            out.sent_at[rec.sig_id] = time.time()
        while True:
            try:
                prod.produce(topic, rec.value, rec.key, on_delivery=cb)
                break
            except BufferError:
                prod.poll(0.01)
        if i % 1000 == 0:
            prod.poll(0)
    out.last_ts = time.time()
    remaining = prod.flush(120)
    out.count = len(records) - remaining
    if remaining or out.errors:
        raise RuntimeError(f"producer: {remaining} records unsent, {out.errors} delivery errors")
    return out


class Collector(threading.Thread):
    """Reads the command topic from its start in a thread, stamping each arrival."""

    def __init__(self, bootstrap: str, topic: str, *, keep_values: bool = False,
                 keep_stamps: bool = False, start: dict[int, int] | None = None) -> None:
        super().__init__(daemon=True, name="bench-collector")
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "fetch.wait.max.ms": 10, "auto.offset.reset": "earliest",
        })
        meta = self._consumer.list_topics(topic, timeout=10)
        parts = sorted(meta.topics[topic].partitions)
        # Explicit start offsets (where a previous collector stopped), not "latest": tansu's
        # answer to that is short of the end (see runtime.kafka_compat).
        start = start or {}
        self._consumer.assign([TopicPartition(topic, p, start.get(p, OFFSET_BEGINNING))
                               for p in parts])
        self.ends: dict[int, int] = dict(start)
        self.keep_values = keep_values
        self.keep_stamps = keep_stamps
        self.stamps: list[tuple[int, float]] = []
        """(record timestamp ms, arrival) per record, with ``keep_stamps``."""
        self.arrivals: list[tuple[str, float]] = []
        self.values: list[tuple[bytes, float]] = []
        self.last_arrival = 0.0
        self._stop_evt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self._stop_evt.is_set():
                # poll() returns as soon as one message is there; consume(n, timeout)
                # would wait for n messages or the whole timeout, and every arrival would
                # be stamped up to that timeout late (50 ms added ~25 ms to the p50).
                first = self._consumer.poll(0.05)
                if first is None:
                    continue
                now = time.time()
                msgs = [first, *self._consumer.consume(num_messages=2000, timeout=0)]
                got = []
                for m in msgs:
                    if m.error() is not None:
                        continue
                    p, o = m.partition() or 0, m.offset() or 0
                    if o + 1 > self.ends.get(p, 0):
                        self.ends[p] = o + 1
                    cid = ""
                    for header in m.headers() or ():
                        if header[0] == CMD_HEADER and isinstance(header[1], bytes):
                            cid = header[1].decode()
                    got.append((cid, now))
                    if self.keep_values:
                        self.values.append((m.value() or b"", now))
                    if self.keep_stamps:
                        self.stamps.append((m.timestamp()[1], now))
                with self.lock:
                    self.arrivals.extend(got)
                    self.last_arrival = now
        finally:
            self._consumer.close()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(30)


def committed(bootstrap: str, group: str, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The consumer group's committed offsets (-1 where none), without joining the group."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()
