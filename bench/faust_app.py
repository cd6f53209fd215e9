"""The faust-streaming baseline: one agent taking batches of the signal topic.

Run as ``python -m bench.faust_app worker -l warn`` with ``BENCH_FAUST_*`` in the
environment (see ``baselines.run_faust``). The agent parses each value as JSON, like
flagman and the raw baseline, and writes its timings to ``BENCH_FAUST_OUT`` once it
has seen ``BENCH_FAUST_N`` records; the harness then stops the process.
"""

from __future__ import annotations

import json
import os
import time

import faust

_env = os.environ
N = int(_env.get("BENCH_FAUST_N", "0"))
OUT = _env.get("BENCH_FAUST_OUT", "faust-result.json")

app = faust.App(
    _env.get("BENCH_FAUST_ID", "flagman-bench-faust"),
    broker=f"kafka://{_env.get('BENCH_FAUST_BOOTSTRAP', 'localhost:9092')}",
    store="memory://",
    web_enabled=False,
    topic_disable_leader=True,
    topic_allow_declare=False,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    broker_rebalance_timeout=10.0,
    producer_acks=1,
)
topic = app.topic(_env.get("BENCH_FAUST_TOPIC", "flagman.signals"), value_serializer="raw")


@app.agent(topic)
async def consume(stream):  # type: ignore[no-untyped-def]
    seen = parsed = first_batch = 0
    first = 0.0
    async for batch in stream.take(1000, within=1):
        if not first:
            first, first_batch = time.time(), len(batch)
        for value in batch:
            try:
                json.loads(value)
                parsed += 1
            except ValueError:
                pass
        seen += len(batch)
        if seen >= N:
            result = {"records": seen, "parsed": parsed, "first_ts": first,
                      "first_batch": first_batch, "last_ts": time.time()}
            with open(OUT + ".tmp", "w") as f:
                json.dump(result, f)
            os.replace(OUT + ".tmp", OUT)


if __name__ == "__main__":
    app.main()
