"""What the embedded broker costs by itself: tansu's CPU under a paced producer, with and
without one consumer at the tail, sampled in windows.

``python -m bench.broker_probe [--rate 2000] [--seconds 30] [--linger-ms 5]`` starts its
own tansu, runs the producer alone on one topic, then producer plus consumer on another,
and prints tansu's CPU (cores) per window for each. No flagman code is involved: the
numbers say what any client of this broker on this machine pays.

Measured on the session-8 machine (2k/s, ``linger.ms`` 5, 3 partitions, fetch wait
10 ms): the producer alone holds tansu at 0.13 core; with one consumer it climbs
window by window (0.34, 0.48, 0.65, 0.85, 0.98 ...) to a whole core after ~12 s and
stays there. Its work per fetch grows with the batches the partition holds.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import uuid

import psutil
from confluent_kafka import Consumer, TopicPartition

from runtime.broker import EmbeddedBroker, ensure_topics

from .clients import produce
from .workload import Record

_VALUE = b'{"name":"table_ready","params":{"table":"db.t000001","dt":"2026-01-01"}}'


def _produce(bootstrap: str, topic: str, seconds: float, rate: float, linger_ms: int) -> None:
    records = [Record(b"k%d" % (i % 97), _VALUE, None, 0, 0) for i in range(int(seconds * rate))]
    produce(bootstrap, topic, records, rate=rate, linger_ms=linger_ms)


def _consume(bootstrap: str, topic: str, partitions: int, stop: threading.Event,
             fetch_wait_ms: int, fetch_min_bytes: int) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait_ms,
                  "fetch.min.bytes": fetch_min_bytes})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    try:
        while not stop.is_set():
            if c.poll(0.05) is not None:
                c.consume(2000, 0)
    finally:
        c.close()


async def _phase(broker: EmbeddedBroker, a: argparse.Namespace, consumer: bool,
                 window: float) -> list[float]:
    topic = f"probe.{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, {topic: a.partitions})
    proc = psutil.Process(broker.pid)
    stop = threading.Event()
    threads = [threading.Thread(target=_produce, args=(broker.bootstrap, topic, a.seconds,
                                                       a.rate, a.linger_ms))]
    if consumer:
        threads.append(threading.Thread(target=_consume, args=(
            broker.bootstrap, topic, a.partitions, stop, a.fetch_wait_ms, a.fetch_min_bytes)))
    for t in threads:
        t.start()
    out = []
    last = sum(proc.cpu_times()[:2])
    while threads[0].is_alive():
        await asyncio.sleep(window)
        now = sum(proc.cpu_times()[:2])
        out.append(round((now - last) / window, 2))
        last = now
    stop.set()
    for t in threads:
        await asyncio.to_thread(t.join)
    return out


async def probe(a: argparse.Namespace) -> dict[str, list[float]]:
    broker = EmbeddedBroker()
    await broker.start()
    try:
        return {"producer alone": await _phase(broker, a, False, a.window),
                "producer + consumer": await _phase(broker, a, True, a.window)}
    finally:
        await broker.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.broker_probe",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--fetch-wait-ms", type=int, default=10)
    ap.add_argument("--fetch-min-bytes", type=int, default=1)
    ap.add_argument("--window", type=float, default=3.0, help="seconds per CPU sample")
    a = ap.parse_args(argv)
    for name, windows in asyncio.run(probe(a)).items():
        print(f"tansu CPU, cores per {a.window:g} s, {name}: {windows}")


if __name__ == "__main__":
    main()
