"""``flagman demo``: two days of a small warehouse, told signal by signal.

Everything runs in this process on embedded defaults: a tansu broker on a free
port, a SQLite store in a temporary directory, the triggers of
``examples/warehouse.yaml`` and one ``Worker``. Each step emits one record, waits
(with a timeout, never a fixed sleep) until the worker has processed it and every
command or dead letter it caused has arrived on its topic, then says what fired
and why, and what is still waiting for what. The worker's state is only read.

The script also states what each step should cause; if the service disagrees,
the demo says so and exits 1, so it doubles as an end-to-end smoke test.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from triggers import CompiledTrigger

from .broker import EmbeddedBroker
from .config import WorkerConfig, load_config
from .explain import join_text as _join
from .explain import missing as _missing
from .explain import params_text as _params
from .explain import scalar as _scalar
from .kafka_compat import producer_kwargs
from .logs import configure
from .worker import Worker

STEP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0

SIGNALS = "flagman.signals"
COMMANDS = "flagman.commands"
DLQ = "flagman.dlq"


# -- the script ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One record to emit and the triggers it should fire (``trigger@generation``)."""

    name: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    payload: Any = None
    raw: bytes | None = None
    """A hand-written record value (to show the dead-letter topic); overrides the rest."""
    fires: tuple[str, ...] = ()

    def value(self) -> bytes:
        if self.raw is not None:
            return self.raw
        body: dict[str, Any] = {"name": self.name, "params": dict(self.params)}
        if self.id is not None:
            body["id"] = self.id
        if self.payload is not None:
            body["payload"] = self.payload
        return json.dumps(body, separators=(",", ":")).encode()


D1, D2 = "2026-11-25", "2026-11-26"


def _table(table: str, dt: str, region: str | None, rows: int, rev: str = "") -> Step:
    params = {"table": table, "dt": dt, **({"region": region} if region else {})}
    sig_id = "-".join(p for p in (table.removeprefix("db."), dt, region, rev) if p)
    return Step("table_ready", params, sig_id, {"rows": rows})


def _fires(step: Step, *fires: str) -> Step:
    return replace(step, fires=fires)


CHAPTERS: list[tuple[str, str, list[Step]]] = [
    (
        f"{D1}, 06:00 - the nightly loads land",
        "Orders, refunds and the FX feed arrive one by one, in no particular order.",
        [
            _fires(_table("db.orders", D1, "us", 120331), "orders.quality.validate@0"),
            _table("db.refunds", D1, "us", 312),
            _fires(_table("db.refunds", D1, "eu", 97), "refunds.audit.daily@0"),
            _fires(
                _table("db.fx_rates", D1, None, 162),
                "fx.sanity.check@0", "revenue.daily.aggregate@0",
            ),
        ],
    ),
    (
        f"{D1}, 07:00 - a retry and a broken producer",
        "The orders loader retries and announces the same signal again; another job "
        "sends a record whose params break the rules.",
        [
            _table("db.orders", D1, "us", 120331),
            Step(raw=json.dumps(
                {"name": "table_ready",
                 "params": {"table": "db.users", "dt": D1, "region": ["us", "eu"]}},
                separators=(",", ":"),
            ).encode()),
        ],
    ),
    (
        f"{D1}, 08:00 - order items and users",
        "Publishing needs the region's order items; user growth needs users and orders.",
        [
            _fires(_table("db.order_items", D1, "us", 388120), "revenue.daily.publish@0"),
            _fires(_table("db.users", D1, "eu", 5120), "user_growth.daily@0"),
        ],
    ),
    (
        f"{D1}, 14:00 - a late correction",
        "The order items of the day are reloaded. revenue.daily.publish has "
        "on_update: refire, so it publishes again; the others ignore the update.",
        [
            _fires(_table("db.order_items", D1, "us", 388402, "r2"), "revenue.daily.publish@1"),
        ],
    ),
    (
        f"{D2} - treasury pins the FX rates by hand",
        "fx_override carries the day as `date`; the triggers map it with join_as: {dt: date}.",
        [
            _fires(
                Step("fx_override", {"date": D2, "analyst": "kim"}, f"fx-override-{D2}"),
                "fx.sanity.check@0",
            ),
            _fires(_table("db.orders", D2, "us", 118774), "orders.quality.validate@0"),
            _fires(_table("db.refunds", D2, "eu", 101), "revenue.daily.aggregate@0"),
        ],
    ),
    (
        f"{D2} - model releases (a trigger without join)",
        "ml.churn.score has no join: it fires once per matching signal, generation 0, 1, ...",
        [
            _fires(
                Step("model_published", {"model": "churn", "version": "3.1.0", "stage": "staging"},
                     "churn-3.1.0-staging", {"uri": "s3://models/churn/3.1.0"}),
                "ml.churn.score@0",
            ),
            _fires(
                Step("model_published",
                     {"model": "churn", "version": "3.1.0", "stage": "production"},
                     "churn-3.1.0-production", {"uri": "s3://models/churn/3.1.0"}),
                "ml.churn.score@1",
            ),
            Step("model_published", {"model": "ltv", "version": "0.9.0", "stage": "production"},
                 "ltv-0.9.0-production", {"uri": "s3://models/ltv/0.9.0"}),
        ],
    ),
]


# -- reading the topics --------------------------------------------------------------


class Tap:
    """Reads the command and dead-letter topics from the beginning, as they grow."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=50,
        )
        self.commands: list[dict[str, Any]] = []
        self.dead: list[ConsumerRecord[bytes, bytes]] = []

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in (COMMANDS, DLQ)
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def until(self, commands: int, dead: int, deadline: float) -> None:
        """Read until at least this many commands and dead letters have arrived in all."""
        while len(self.commands) < commands or len(self.dead) < dead:
            if time.monotonic() > deadline:
                raise TimeoutError
            batch = await self.consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                for rec in recs:
                    if rec.topic == COMMANDS:
                        self.commands.append(json.loads(rec.value or b"{}"))
                    else:
                        self.dead.append(rec)


# -- explaining ----------------------------------------------------------------------




def _touched(worker: Worker, step: Step) -> list[tuple[CompiledTrigger, tuple[Any, ...] | None]]:
    """The (trigger, join tuple) pairs this signal counts for, by trigger id."""
    planned = worker.matcher.plan_one(step.name, step.params)
    seen: dict[tuple[str, Any], tuple[CompiledTrigger, tuple[Any, ...] | None]] = {}
    for lc, values, tk in planned.hits:
        for trig in lc.uses:
            seen.setdefault((trig.id, tk), (trig, values))
    return [seen[k] for k in sorted(seen, key=lambda k: (k[0], str(k[1])))]


def _status(worker: Worker, trig: CompiledTrigger, values: tuple[Any, ...] | None) -> str:
    """A line on a touched trigger that issued nothing for this signal ("" if unknown)."""
    from triggers import NO_JOIN, tuple_key

    state = worker.state
    join = trig.join_object(values)
    tk = NO_JOIN if values is None else tuple_key(values)
    mask = 0
    if trig.join:
        if tk not in state.tuples:  # evicted from the worker's cache: nothing to say
            return ""
        if state.fired_gen(trig.id, tk) is not None:
            why = "" if trig.refire else (
                "; on_update: ignore, so the signal is recorded and nothing is issued")
            return f"· {trig.id} {_join(join)} already fired{why}"
        for leaf in trig.leaves:
            seq = state.hit(leaf.lc.key, tk)
            if seq is not None and seq >= trig.min_seq:
                mask |= 1 << leaf.index
    else:  # a trigger without join counts the signals of its current round
        rnd = state.rounds.get(trig.id)
        for i in rnd.queue if rnd else ():
            mask |= 1 << i
    return f"… still waiting: {trig.id} {_join(join)} needs {_missing(trig.tree, mask, trig)}"


def _fired_lines(cmd: Mapping[str, Any]) -> list[str]:
    gen = cmd["generation"]
    extra = f"generation {gen}, " if gen or cmd["join"] is None else ""
    because = ", ".join(f"{s['leaf']}={s['id']}" for s in cmd["signals"])
    where = _join(cmd["join"]) if cmd["join"] else "without join"
    return [
        f"✓ fired {cmd['trigger']['id']} {where} "
        f"({extra}command {cmd['command_id'][:12]}…): because {because}",
        f"    {cmd['type']} {cmd['workflow']}"
        + (f".{cmd['step']}" if cmd["step"] else "")
        + f" params {json.dumps(cmd['params'], separators=(', ', ': '))}",
    ]


def _header(rec: ConsumerRecord[bytes, bytes], name: str) -> str:
    for k, v in rec.headers or ():
        if k == name and v is not None:
            return bytes(v).decode()
    return ""


# -- the story -----------------------------------------------------------------------


class _Story:
    def __init__(self, worker: Worker, tap: Tap, producer: AIOKafkaProducer) -> None:
        self.worker = worker
        self.tap = tap
        self.producer = producer
        self.problems: list[str] = []

    def _processed(self) -> int:
        m = self.worker.metrics.snapshot()
        return m.get("signals", 0) + m.get("duplicates", 0) + m.get("dead_lettered", 0)

    async def step(self, step: Step) -> None:
        if step.raw is not None:
            print(f"→ record {step.raw.decode()}")
        else:
            ident = f" [id {step.id}]" if step.id else ""
            print(f"→ signal {step.name} {_params(step.params)}{ident}")
        before = self.worker.metrics.snapshot()
        n_cmd, n_dead = len(self.tap.commands), len(self.tap.dead)
        target = self._processed() + 1
        key = step.name.encode() if step.name else b"unknown"
        await self.producer.send_and_wait(SIGNALS, step.value(), key=key)

        deadline = time.monotonic() + STEP_TIMEOUT_S
        # The worker's counters move once per record, after its transaction and before
        # it publishes; a short poll on them (bounded by the deadline) says "processed".
        while self._processed() < target:
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.02)
        after = self.worker.metrics.snapshot()

        def delta(k: str) -> int:
            return after.get(k, 0) - before.get(k, 0)

        await self.tap.until(n_cmd + delta("commands"), n_dead + delta("dead_lettered"), deadline)
        cmds = sorted(self.tap.commands[n_cmd:],
                      key=lambda c: (c["trigger"]["id"], json.dumps(c["join"]), c["generation"]))

        if delta("duplicates"):
            print(f"= duplicate of {step.name}/{step.id}: counted and logged, nothing fires "
                  "(the first record with this identity wins)")
        for rec in self.tap.dead[n_dead:]:
            print(f"✗ dead-lettered to {rec.topic} "
                  f"(from {_header(rec, 'flagman-source-topic')}"
                  f"/{_header(rec, 'flagman-source-partition')}"
                  f"@{_header(rec, 'flagman-source-offset')}, value kept byte for byte): "
                  f"flagman-error: {_header(rec, 'flagman-error')}")
        for cmd in cmds:
            for line in _fired_lines(cmd):
                print(line)
        if step.raw is None and not delta("duplicates"):
            fired_now = {(c["trigger"]["id"], json.dumps(c["join"], sort_keys=True)) for c in cmds}
            touched = _touched(self.worker, step)
            if not touched:
                print("· no trigger listens for this signal: stored, nothing to do")
            for trig, values in touched:
                key2 = (trig.id, json.dumps(trig.join_object(values), sort_keys=True))
                line = "" if key2 in fired_now else _status(self.worker, trig, values)
                if line:
                    print(line)

        got = sorted(f"{c['trigger']['id']}@{c['generation']}" for c in cmds)
        if got != sorted(step.fires):
            self.problems.append(f"{step.name or 'record'} {step.id or ''}: expected "
                                 f"{sorted(step.fires) or 'nothing'}, got {got or 'nothing'}")
            print(f"! expected {sorted(step.fires) or 'nothing'}, got {got or 'nothing'}")
        print()

    def summary(self) -> None:
        m = self.worker.metrics.snapshot()
        print("Summary")
        rows = [("signals", m.get("signals", 0)), ("duplicates", m.get("duplicates", 0)),
                ("dead-lettered", m.get("dead_lettered", 0)), ("commands", m.get("commands", 0))]
        for label, n in rows:
            print(f"  {label:<14}{n:>4}")
        print()
        print(f"  {'trigger':<26}{'join':<34}{'gen':>4}  command_id")
        cmds = sorted(self.tap.commands,
                      key=lambda c: (c["trigger"]["id"], json.dumps(c["join"]), c["generation"]))
        for c in cmds:
            join = ", ".join(f"{k}={_scalar(v)}" for k, v in (c["join"] or {}).items()) or "-"
            print(f"  {c['trigger']['id']:<26}{join:<34}{c['generation']:>4}  "
                  f"{c['command_id'][:12]}…")
        ids = [c["command_id"] for c in self.tap.commands]
        if len(ids) != len(set(ids)):
            self.problems.append("a command_id appeared twice on the command topic")
        print()
        print(f"  {len(ids)} commands on {COMMANDS}, {len(set(ids))} distinct command_ids")


async def demo() -> int:
    """Run the scripted story; 0 when every step did what the script expects."""
    configure("error", "console")
    started = time.monotonic()
    print("flagman demo: two days of a small warehouse\n")
    with tempfile.TemporaryDirectory(prefix="flagman-demo-") as tmp:
        broker = EmbeddedBroker()
        await broker.start()
        try:
            db = f"sqlite+aiosqlite:///{Path(tmp) / 'flagman.db'}"
            cfg = _config(broker.bootstrap, db)
            n = await _apply(db)
            print(f"broker   embedded (tansu) at {broker.bootstrap}")
            print("store    SQLite in a temporary directory")
            print(f"triggers {n} from examples/warehouse.yaml\n")
            return await _tell(cfg, started)
        finally:
            await broker.stop()


def _config(bootstrap: str, db: str) -> WorkerConfig:
    cfg = load_config(
        bootstrap=bootstrap, db=db, signal_topics=SIGNALS, command_topic=COMMANDS, dlq_topic=DLQ,
        group="flagman-demo", session_timeout_ms=6000, reload_interval_s=0.5,
        kafka_security_protocol="PLAINTEXT", create_topics=True,
    )
    # The demo talks to its own broker: no credentials from the environment apply.
    return cfg.model_copy(update={"kafka_sasl_mechanism": None})


async def _apply(db: str) -> int:
    from .apply import apply_definitions, load
    from .cli import examples_dir
    from .store.sql import SqlStore

    defs = load([examples_dir() / "warehouse.yaml"])
    store = SqlStore(db)
    try:
        await store.open()
        await apply_definitions(store, defs)
    finally:
        await store.close()
    return len(defs)


async def _tell(cfg: WorkerConfig, started: float) -> int:
    worker = Worker(cfg)
    task = asyncio.create_task(worker.run())
    tap = Tap(cfg.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap, linger_ms=0, **producer_kwargs())
    try:
        assigned = asyncio.create_task(worker.assigned_once.wait())
        done, _ = await asyncio.wait({task, assigned}, timeout=START_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if assigned not in done:
            assigned.cancel()
            if task in done:
                task.result()  # the worker failed: let its error out
            print(f"the worker did not get its partitions within {START_TIMEOUT_S:g}s")
            return 1
        await producer.start()
        await tap.start()
        story = _Story(worker, tap, producer)
        for i, (title, intro, steps) in enumerate(CHAPTERS, 1):
            print(f"== {i}. {title}")
            print(textwrap.fill(intro, 88, initial_indent="   ", subsequent_indent="   ") + "\n")
            for step in steps:
                await story.step(step)
        story.summary()
    except TimeoutError:
        print(f"! a step took longer than {STEP_TIMEOUT_S:g}s; stopping")
        return 1
    finally:
        await producer.stop()
        await tap.stop()
        worker.stop()
        try:
            await task
        except Exception as exc:  # the story is told; say why the worker failed, briefly
            print(f"! the worker stopped with an error: {type(exc).__name__}: {exc}")
            return 1
    if story.problems:
        print("\nThe service did not do what the script expects:")
        for p in story.problems:
            print(f"  - {p}")
        return 1
    print(f"\ndone in {time.monotonic() - started:.1f}s; the worker stopped cleanly.")
    return 0
