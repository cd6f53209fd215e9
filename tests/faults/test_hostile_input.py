"""Hostile and bad input against the live worker.

Hand-picked records (see ``_hostile.HAND_PICKED``: invalid UTF-8, not JSON, not an
object, wrong types, nulls, nested params, 65 params, 10 KB keys, values over 1 MiB,
NaN/Infinity, huge integers, 10k-level nesting, duplicate keys, CloudEvents missing
required attributes, binary-mode headers with bad encodings) plus Hypothesis-drawn
ones (one rule broken by construction, and arbitrary bytes/JSON/headers) are sent,
each preceded by a valid signal. Every hostile record must land in the dead-letter
topic byte for byte with a precise ``flagman-error``; the valid ones must give exactly
the expected commands; the worker must never stop.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Topics
from tests.faults._hostile import (
    EDGES,
    HAND_PICKED,
    Hostile,
    arbitrary_records,
    broken_signals,
    draw_examples,
    exactly_one_mib,
)
from tests.faults._support import (
    MiB,
    db_query,
    dlq_by_position,
    ends_of,
    events,
    produce_at,
    report,
    rss_bytes,
    wait_complete,
)
from tests.faults.conftest import MakeDb, MakeWorker
from tests.harness import apply_yaml, command_ids, wait_until
from triggers import command_id

pytestmark = pytest.mark.integration

TRIGGERS = """
- id: fuzz.ok
  workflow: wf_fuzz
  when: {signal: ok}
  join: [k]
"""

# A reason names the field first: value, name, params.x, header ce_id, data, ...
FIELD_FIRST = re.compile(
    r"^(value|name|params|id|source|time|type|specversion|data|data_base64|payload|timestamp"
    r"|header ce_[a-z]+)([.\[][^:]*)?: \S"
)


def ok(k: Any) -> bytes:
    return json.dumps({"name": "ok", "params": {"k": k}}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("n_broken", "n_arbitrary"),
    [
        pytest.param(150, 150, id="short"),
        pytest.param(3000, 3000, id="long", marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
    ],
)
async def test_hostile_records_dead_lettered_and_worker_keeps_going(
    n_broken: int, n_arbitrary: int, kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics,
    tmp_path: Path,
) -> None:
    db = await make_db("sqlite")
    await apply_yaml(db, TRIGGERS)
    hostile: list[Hostile] = (HAND_PICKED + draw_examples(broken_signals(), n_broken)
                              + draw_examples(arbitrary_records(), n_arbitrary))
    stream: list[Any] = []
    kinds: list[Hostile | None] = []
    expected: set[str] = set()
    for i, h in enumerate(hostile):
        stream += [(f"ok-{i}".encode(), ok(i), []), h.record()]
        kinds += [None, h]
        expected.add(command_id("fuzz.ok", {"k": i}, 0))
    for label, value in [*EDGES, ("exactly 1 MiB", exactly_one_mib())]:
        stream.append((label.encode(), value, []))
        kinds.append(None)
        expected.add(command_id("fuzz.ok", {"k": json.loads(value)["params"]["k"]}, 0))
    stream.append((b"last", ok("last"), []))
    kinds.append(None)
    expected.add(command_id("fuzz.ok", {"k": "last"}, 0))

    env = {**topics.env(), "FLAGMAN_BATCH_MAX": "100", "FLAGMAN_FETCH_WAIT_MS": "50"}
    worker = make_worker(kafka_bootstrap, db, env)
    worker.start()
    await worker.wait_assigned()
    started = time.monotonic()
    positions = await produce_at(kafka_bootstrap, topics.signals, stream, partition=0)

    def alive() -> None:
        assert worker.alive(), "the worker stopped:\n" + worker.log_path.read_text()[-3000:]

    await wait_complete(kafka_bootstrap, topics.commands, topics.group, topics.signals, expected,
                        ends_of(positions), timeout=300, alive=alive)
    elapsed = time.monotonic() - started
    assert worker.proc is not None
    rss = rss_bytes(worker.proc.pid)
    assert worker.terminate() == 0
    assert len(events(worker, "worker ready")) == 1, "the worker restarted"

    ids = await command_ids(kafka_bootstrap, topics.commands)
    dlq = await dlq_by_position(kafka_bootstrap, topics.dlq)
    stored = {int(r[0]) for r in await db_query(
        db, f"SELECT \"offset\" FROM signals WHERE topic = '{topics.signals}'")}
    problems: list[str] = []
    accepted_arbitrary = 0
    for (key, value, headers), kind, (part, off) in zip(stream, kinds, positions, strict=True):
        got = dlq.get((part, off), [])
        if kind is None:
            if got:
                problems.append(f"valid record at {off} dead-lettered: {_error(got[0])}")
            continue
        if not got:
            if kind.label == "arbitrary" and off in stored:
                accepted_arbitrary += 1
                continue
            problems.append(f"{kind.label}: not dead-lettered (offset {off})")
            continue
        rec = got[0]
        err = _error(rec)
        h = dict(rec.headers)
        if not re.search(kind.error, err) or not FIELD_FIRST.match(err):
            problems.append(f"{kind.label}: flagman-error {err[:160]!r} !~ {kind.error!r}")
        if "\n" in err or len(err) > 400:
            problems.append(f"{kind.label}: flagman-error not one bounded line ({len(err)} chars)")
        if rec.value != value or rec.key != key or list(rec.headers[: len(headers)]) != list(headers):
            problems.append(f"{kind.label}: not dead-lettered byte for byte")
        if (h["flagman-source-topic"].decode(), h["flagman-source-offset"].decode()) != (
            topics.signals, str(off)
        ):
            problems.append(f"{kind.label}: wrong source headers {h}")

    report("hostile records", hand_picked=len(HAND_PICKED), hypothesis_broken=n_broken,
           hypothesis_arbitrary=n_arbitrary, hostile_total=len(hostile),
           dead_lettered=sum(1 for k, p in zip(kinds, positions, strict=True) if k and p in dlq),
           arbitrary_accepted=accepted_arbitrary, valid=len(expected), commands=len(ids),
           missing=len(expected - set(ids)), duplicates=len(ids) - len(set(ids)),
           problems=len(problems), seconds=round(elapsed, 1), worker_rss_mib=round(rss / MiB, 1))
    assert not problems, "\n".join(problems[:30])
    assert set(ids) == expected
    assert len(ids) == len(set(ids))


def _error(rec: Any) -> str:
    value: bytes = dict(rec.headers)["flagman-error"]
    return value.decode()


@pytest.mark.parametrize("size_mib", [pytest.param(5, id="5MiB")])
async def test_record_too_large_to_dead_letter_does_not_stop_the_worker(
    size_mib: int, kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics, tmp_path: Path
) -> None:
    """A record the broker accepted but the worker cannot copy to the dead-letter topic
    as it is (over the producer's request limit): it must still be dead-lettered (its
    headers, and as much as can be carried), and the records after it processed."""
    db = await make_db("sqlite")
    await apply_yaml(db, TRIGGERS)
    worker = make_worker(kafka_bootstrap, db, topics.env())
    worker.start()
    await worker.wait_assigned()
    big = b'{"name":"ok","params":{"k":"big"},"payload":"' + b"x" * (size_mib * MiB) + b'"}'
    stream = [(b"big", big, []), *[(b"k", ok(n), []) for n in range(5)]]
    positions = await produce_at(kafka_bootstrap, topics.signals, stream, partition=0,
                                 max_request_size=(size_mib + 1) * MiB)
    expected = {command_id("fuzz.ok", {"k": n}, 0) for n in range(5)}

    async def after_big_processed() -> bool:
        assert worker.alive()
        return set(await command_ids(kafka_bootstrap, topics.commands)) >= expected

    try:
        await wait_until(after_big_processed, timeout=20,
                         what="the records after an oversized one (the worker is stuck on it)")
    finally:
        retries = events(worker, "publish failed, retrying")
        report("oversized record", size_mib=size_mib, publish_retries=len(retries),
               first_error=(retries[0].get("error", "")[:120] if retries else None))
        if worker.alive():
            worker.kill9()
    dlq = await dlq_by_position(kafka_bootstrap, topics.dlq)
    assert positions[0] in dlq, "the oversized record must be dead-lettered"
    assert "1048576" in _error(dlq[positions[0]][0])


async def test_record_with_null_key_and_null_value_is_dead_lettered(
    kafka_bootstrap: str, make_db: MakeDb, make_worker: MakeWorker, topics: Topics, tmp_path: Path
) -> None:
    """A keyless tombstone (null key, null value), as librdkafka, kcat or the Java client
    can send: it must be dead-lettered like any empty record, not stop the worker."""
    from confluent_kafka import Producer

    db = await make_db("sqlite")
    await apply_yaml(db, TRIGGERS)
    worker = make_worker(kafka_bootstrap, db, topics.env())
    worker.start()
    await worker.wait_assigned()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": False})
    producer.produce(topics.signals, value=None, key=None, partition=0)
    for n in range(3):
        producer.produce(topics.signals, value=ok(n), partition=0)
    assert producer.flush(30) == 0
    del producer  # librdkafka keeps connecting while the object lives
    expected = {command_id("fuzz.ok", {"k": n}, 0) for n in range(3)}

    async def processed() -> bool:
        assert worker.alive(), "the worker crashed:\n" + worker.log_path.read_text()[-1500:]
        return set(await command_ids(kafka_bootstrap, topics.commands)) >= expected

    try:
        await wait_until(processed, timeout=30, what="the records after a keyless tombstone")
    finally:
        if worker.alive():
            worker.kill9()
    dlq = await dlq_by_position(kafka_bootstrap, topics.dlq)
    assert (0, 0) in dlq
    rec = dlq[(0, 0)][0]
    assert _error(rec).startswith("value: empty record")
