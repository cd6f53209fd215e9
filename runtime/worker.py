"""The worker: signals in, exactly-once commands out.

One batch at a time, under ``self._lock`` (rebalance callbacks and trigger reloads
take it too):

1. parse every record; bad ones are headed for the dead-letter topic;
2. one database transaction: lock the join tuples touched, refresh their state,
   insert the new signals (duplicates by identity drop out here), run the matcher,
   insert hits and firings (each firing carries its full command text, and gets a
   row in the ``unpublished`` outbox, deleted once the broker acknowledged it);
3. publish dead letters and commands, wait for the broker's acks;
4. commit the consumer offsets.

A crash anywhere leaves either uncommitted offsets (the records come again and are
duplicates now) or stored firings still in the outbox; those are recovered when
their source partition is assigned: the command topic is read from the offset the
firing recorded (``scan_from``) and only commands not found there are published.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from signals import Signal, SignalError, SignalRef, parse_record
from triggers import NO_JOIN, CompiledTrigger, Effects, Firing, Matcher, MatchState, Plan

from .broker import BrokerError
from .commands import build_command, encode, iso_now, partition_for
from .config import WorkerConfig
from .logs import get_logger
from .metrics import Metrics
from .store.base import FiringRow, SignalRow, StoreError
from .store.sql import SqlStore, SqlTx
from .triggerset import TriggerSet

log = get_logger("flagman.worker")

CMD_HEADER = "flagman-command-id"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Taking the lock waits for the batch in flight; settling waits for its acks and
        # commits its offsets before the partitions go to another member.
        async with self.worker._lock:
            log.info("partitions revoked", partitions=_fmt(revoked))
            await self.worker._settle(final=True)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.worker._lock:
            log.info("partitions assigned", partitions=_fmt(assigned))
            await self.worker.recover(assigned)
            self.worker.assigned_once.set()


@dataclass(slots=True)
class _Sends:
    """Commands and dead letters handed to the producer, not yet acknowledged.

    One entry per produce batch (commands) or record (dead letters), so that a retry
    after a failure re-sends only what the broker did not acknowledge.
    """

    commands: list[tuple[list[FiringRow], asyncio.Future[Any]]] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[Any, Any], str, asyncio.Future[Any]]] = field(
        default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    """Consumer offsets to commit once everything above is acknowledged."""


@dataclass(slots=True)
class _Prepared:
    """A fetched batch parsed and planned, ready for its transaction."""

    batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    good: list[tuple[ConsumerRecord[Any, Any], Signal]] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[Any, Any], str]] = field(default_factory=list)
    rows: list[SignalRow] = field(default_factory=list)
    plan: Plan = field(default_factory=lambda: Plan([], set()))
    dups: int = 0
    ms: float = 0.0
    age_ms: float = 0.0
    """How long the oldest record had waited when the batch was taken (its timestamp)."""


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


def _fmt(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)


class Worker:
    """Consumes signals, persists state, publishes commands."""

    def __init__(self, cfg: WorkerConfig, store: SqlStore | None = None) -> None:
        self.cfg = cfg
        self.store = store or SqlStore(cfg.db, checkpoint_s=1.0,
                                       batch_cache_mib=cfg.sqlite_cache_mib)
        self.matcher = Matcher()
        self.state = MatchState()
        self.triggers = TriggerSet(self.matcher)
        self.metrics = Metrics()
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self.assigned_once = asyncio.Event()
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._cmd_partitions: list[int] = []
        self._cmd_end: dict[int, int] = {}
        self._to_mark: list[int] = []  # fids of firings published, marked in the next tx
        self._last_reload = 0.0
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._refs: dict[int, SignalRef] = {}
        self._inflight: _Sends | None = None
        self._committing: asyncio.Future[None] | None = None
        self._partition_of: dict[str, int] = {}
        self._attempts = 0

    # -- lifecycle ---------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to finish the batch in flight, commit and return."""
        self._stop.set()

    async def run(self) -> None:
        """Run until ``stop()``; returns after a clean shutdown."""
        configure_gc()
        await self._open_store()
        await self._load_triggers(at_startup=True)
        try:
            await self._start_kafka()
            if self._stop.is_set():
                return
            self.ready.set()
            log.info("worker ready", topics=self.cfg.topics, group=self.cfg.group,
                     triggers=len(self.matcher.index))
            await self._loop()
        finally:
            await self._shutdown()

    async def _open_store(self) -> None:
        """Connect and migrate; wait (with backoff, up to 60 s) while the database is
        unreachable, then fail with its error: a wrong URL must not wait forever."""
        delay = 0.5
        deadline = time.monotonic() + 60
        while True:
            try:
                await self.store.open()
                return
            except StoreError as exc:
                if not exc.transient or self._stop.is_set() or time.monotonic() > deadline:
                    raise
                log.warning("database unreachable, retrying", db=self.store.safe_url,
                            error=str(exc), retry_in_s=round(delay, 1))
                await self._sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _start_kafka(self) -> None:
        kw = self.cfg.kafka_kwargs()
        delay = 0.5
        while not self._stop.is_set():
            try:
                if self.cfg.create_topics:
                    from .broker import ensure_topics

                    n = self.cfg.topic_partitions
                    await ensure_topics(
                        self.cfg.bootstrap,
                        {**{t: n for t in self.cfg.topics}, self.cfg.command_topic: n,
                         self.cfg.dlq_topic: n},
                        replication_factor=self.cfg.topic_replication,
                        **{k: v for k, v in kw.items() if k != "bootstrap_servers"},
                    )
                self._producer = AIOKafkaProducer(
                    acks="all", enable_idempotence=False, linger_ms=2,
                    max_batch_size=1 << 20, max_request_size=4 << 20, **kw,
                )
                await self._producer.start()
                self._cmd_partitions = sorted(await self._producer.partitions_for(self.cfg.command_topic))
                self._consumer = AIOKafkaConsumer(
                    group_id=self.cfg.group, enable_auto_commit=False,
                    auto_offset_reset="earliest", fetch_max_wait_ms=self.cfg.fetch_wait_ms,
                    max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20,
                    session_timeout_ms=self.cfg.session_timeout_ms,
                    heartbeat_interval_ms=max(300, self.cfg.session_timeout_ms // 4), **kw,
                )
                await self._consumer.start()
                tps = [TopicPartition(self.cfg.command_topic, p) for p in self._cmd_partitions]
                # A lower bound of each command partition's end: where a later scan may start.
                for tp, off in (await self._consumer.end_offsets(tps)).items():
                    self._cmd_end[tp.partition] = off
                self._consumer.subscribe(self.cfg.topics, listener=_Listener(self))
                return
            except (KafkaError, OSError, BrokerError) as exc:
                await self._close_kafka()
                log.warning("broker unreachable, retrying", bootstrap=self.cfg.bootstrap,
                            error=str(exc) or type(exc).__name__, retry_in_s=round(delay, 1))
                await self._sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _close_kafka(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    # Leaving the group waits for a rebalance in progress: bound it.
                    await asyncio.wait_for(client.stop(), 5)
                except Exception as exc:  # closing a half-started client, or a timeout
                    log.debug("client stop failed", error=str(exc) or type(exc).__name__)
        self._consumer = self._producer = None

    async def _shutdown(self) -> None:
        try:
            if self._producer is not None:
                try:
                    await asyncio.wait_for(self._settle(final=True), 10)
                except (KafkaError, OSError, TimeoutError) as exc:
                    # harmless: uncommitted offsets are re-read, stored commands recovered
                    log.warning("could not settle the last batch at shutdown",
                                error=str(exc) or type(exc).__name__)
            if self._to_mark:
                try:
                    await asyncio.wait_for(self.store.mark_published(self._to_mark), 10)
                    self._to_mark = []
                except (StoreError, TimeoutError) as exc:
                    # harmless: the next start finds them on the command topic
                    log.warning("could not mark published at shutdown",
                                error=str(exc) or type(exc).__name__)
        finally:
            await self._close_kafka()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.close(), 10)
            log.info("worker stopped", **self.metrics.snapshot())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        stopping = asyncio.ensure_future(self._stop.wait())
        while not self._stop.is_set():
            fetch = asyncio.ensure_future(
                consumer.getmany(timeout_ms=500, max_records=self.cfg.batch_max)
            )
            # A rebalance can hold getmany up for long; a stop request must not wait for it.
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, KafkaError):
                    await fetch
                break
            batch = fetch.result()
            async with self._lock:
                if batch:
                    await self.take(batch)
                else:
                    await self._settle()
                now = time.monotonic()
                if now - self._last_reload >= self.cfg.reload_interval_s:
                    self._last_reload = now
                    await self._reload_if_changed()

    # -- triggers ----------------------------------------------------------------
    async def _reload_if_changed(self) -> None:
        try:
            rev = await self.store.trigger_revision()
            if rev != self.triggers.revision:
                await self._load_triggers(at_startup=False)
        except StoreError as exc:
            log.warning("trigger reload failed", error=str(exc))

    async def _load_triggers(self, *, at_startup: bool) -> None:
        # A load allocates a few objects per trigger, all long-lived: collecting while it
        # runs only rescans them (it made loading 3-4x slower). After it, freeze them:
        # full collections then skip the trigger set instead of taking seconds.
        enabled = gc.isenabled()
        gc.disable()
        try:
            installed, n_rows = await self.triggers.load(self.store)
        finally:
            if enabled:
                gc.enable()
        gc.freeze()
        if n_rows:
            log.info("triggers loaded", revision=self.triggers.revision,
                     changed=len(installed), total=len(self.matcher.index))
        todo = [t for t in installed if self.triggers.needs_backfill(t, at_startup=at_startup)]
        self.triggers.unevaluated.clear()  # consulted only here
        if todo:
            await self._backfill(todo)

    async def _backfill(self, trigs: Sequence[CompiledTrigger]) -> None:
        """Evaluate newly applied triggers against stored signals (look-back)."""
        names = sorted({lc.name for t in trigs for lc in t.lcs})
        horizon = min(t.min_seq for t in trigs)
        async with self.store.transaction() as tx:
            history = await tx.history(names, horizon)
        fired: list[FiringRow] = []
        if history:
            planned = [(t, *self.matcher.backfill_plan(t, history)) for t in trigs]
            tks = set().union(*(p[2] for p in planned))
            fired = await self._with_retry(lambda tx: self._backfill_tx(tx, planned, tks))
            await self._publish(fired, [])
        await self.store.mark_backfilled({t.id: t.version for t in trigs})
        log.info("look-back evaluated", triggers=len(trigs), history=len(history),
                 commands=len(fired))

    async def _backfill_tx(self, tx: SqlTx, planned: Any, tks: set[str]) -> list[FiringRow]:
        await tx.lock(tks)
        await tx.refresh(tks, self.matcher, self.state)
        fx = Effects()
        for trig, hits, _ in planned:
            one = self.matcher.backfill_apply(self.state, trig, hits)
            fx.hits += one.hits
            fx.firings += one.firings
        await tx.insert_hits(fx.hits)
        rows = await self._firing_rows(tx, fx.firings, {})
        await tx.insert_firings(rows)
        return rows

    # -- the batch ---------------------------------------------------------------
    async def take(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Store a fetched batch and hand its commands to the producer.

        The broker acknowledges them while the next batch is fetched, parsed and
        planned; that batch's transaction starts by waiting for the acks and committing
        this batch's offsets (``_settle``). ``_settle`` also runs before partitions are
        given up, before recovery and at shutdown.

        (Running the transaction itself in the background, overlapping the next batch's
        parsing, was measured twice and gave nothing: through aiosqlite, whose thread
        needs the GIL for every row it binds, and with the direct SQLite transaction
        (in-process, 20k triggers, 6 days: 71-80 us/record either way). The store
        thread runs Python for most of the transaction, so the two take turns.)
        """
        await self._execute(self._prepare(batch))
        # What outlives a batch is mostly long-lived (join state, recent signals). Frozen,
        # it is left out of the collector's full passes, which otherwise rescan the whole
        # heap every few batches (10-15% of the time, pauses of 0.2-0.4 s, at 100k
        # triggers). Acyclic objects are still freed by reference counting when dropped;
        # bench/inproc.py reports cyclic garbage kept by freezing (none seen). The young
        # collection first finds this batch's cycles, if any, before they are frozen for
        # good. Here, with the parsed batch, its rows and plans freed, it scans little
        # (the fetched records and the commands in flight); see GC_THRESHOLDS.
        gc.collect(0)
        gc.freeze()

    def _prepare(
        self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> _Prepared:
        """Parse, drop in-batch duplicates, plan: no I/O."""
        t0 = time.perf_counter()
        prep = _Prepared(batch)
        good, dead, seen = prep.good, prep.dead, set()
        planned = []
        plan_one = self.matcher.plan_one
        for records in batch.values():
            for rec in records:
                try:
                    sig = parse_record(rec.value, rec.headers, rec.timestamp)
                except SignalError as exc:
                    dead.append((rec, exc.reason))
                    continue
                if sig.identity in seen:
                    prep.dups += 1
                    log.info("duplicate signal", topic=rec.topic, partition=rec.partition,
                             offset=rec.offset, signal=sig.name, signal_id=sig.id)
                    continue
                seen.add(sig.identity)
                good.append((rec, sig))
                planned.append(plan_one(sig.name, sig.params))
                prep.rows.append(_signal_row(rec, sig))
        prep.plan = Plan(planned, {tk for p in planned for _, _, tk in p.hits})
        prep.ms = round((time.perf_counter() - t0) * 1e3, 1)
        now_ms = time.time() * 1000
        prep.age_ms = round(
            now_ms - min((r[0].timestamp for r in batch.values() if r), default=now_ms), 1)
        return prep

    async def _execute(self, prep: _Prepared) -> None:
        """Store a prepared batch in one transaction and hand its commands to the producer."""
        good, dead, plan, rows, batch = prep.good, prep.dead, prep.plan, prep.rows, prep.batch

        async def tx_body(tx: SqlTx) -> tuple[list[FiringRow], list[int], dict[int, SignalRef]]:
            await tx.lock(plan.tuple_keys)
            await tx.refresh(plan.tuple_keys, self.matcher, self.state)
            seqs = await tx.insert_signals(rows)
            fx = self.matcher.apply(self.state, plan, seqs)
            await tx.insert_hits(fx.hits)
            refs = {
                seq: _ref(seq, rec, s) for seq, (rec, s) in zip(seqs, good, strict=True) if seq
            }
            firing_rows = await self._firing_rows(tx, fx.firings, refs)
            await tx.insert_firings(firing_rows)
            await tx.mark_published(self._to_mark)
            await tx.dead_letters(
                [(r.topic, r.partition, r.offset, reason, r.timestamp) for r, reason in dead]
            )
            return firing_rows, [i for i, s in enumerate(seqs) if s is None], refs

        t0 = time.perf_counter()
        await self._settle()  # the previous batch: acks awaited, offsets committed
        t1 = time.perf_counter()
        attempts_before = self._attempts
        fired, dup_idx, new_refs = await self._with_retry(tx_body)
        t2 = time.perf_counter()
        retried = self._attempts - attempts_before > 1
        stored_dups = len(dup_idx)
        for i in dup_idx:
            rec, s = good[i]
            log.info("duplicate signal", topic=rec.topic, partition=rec.partition,
                     offset=rec.offset, signal=s.name, signal_id=s.id)
        self._to_mark = []
        self._touch(plan.tuple_keys)
        self._remember(new_refs)  # committed now: later firings may bind them
        dups = prep.dups + stored_dups
        self.metrics.add(signals=len(good) - stored_dups, duplicates=dups,
                         dead_lettered=len(dead), commands=len(fired), batches=1)
        sends = await self._enqueue(fired, dead)
        sends.offsets = {tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs}
        self._inflight = sends
        if retried:
            # An attempt may have committed on the server while we lost the connection:
            # its commands are stored, and this attempt saw its signals as duplicates.
            await self._settle()
            await self.recover(list(batch))
        log.info("batch done", records=sum(len(r) for r in batch.values()),
                 signals=len(good) - stored_dups, duplicates=dups, dead_lettered=len(dead),
                 commands=len(fired), positions=_positions(batch),
                 command_ids=[f.command_id for f in fired[:5]],
                 age_ms=prep.age_ms, ms={"prepare": prep.ms, "settle": round((t1 - t0) * 1e3, 1),
                     "tx": round((t2 - t1) * 1e3, 1),
                     "send": round((time.perf_counter() - t2) * 1e3, 1)})

    def _remember(self, refs: dict[int, SignalRef]) -> None:
        """Keep the committed signals of recent batches for rendering later commands.

        A command names every signal it binds; most were committed by a recent batch,
        so they come from here rather than from a database read. Oldest first out.
        """
        cache = self._refs
        cache.update(refs)
        excess = len(cache) - self.cfg.signal_cache_max
        if excess > 0:
            for seq in list(itertools.islice(cache, excess)):
                del cache[seq]

    def _touch(self, tks: Iterable[str]) -> None:
        """Keep the in-memory state bounded: forget the least recently used tuples.

        A forgotten tuple is reloaded from the database (watermarks reset) when a later
        batch touches it, so eviction costs a query, never correctness.
        """
        recent = self._recent
        for tk in tks:
            recent[tk] = None
            recent.move_to_end(tk)
        excess = len(recent) - self.cfg.state_max_tuples
        while excess > 0:
            tk, _ = recent.popitem(last=False)
            excess -= 1
            if tk == NO_JOIN:  # rounds of triggers without join stay resident
                recent[tk] = None
                continue
            self.state.evict(tk)
            self.store.wm.hid.pop(tk, None)
            self.store.wm.fid.pop(tk, None)

    async def _with_retry(self, body: Any) -> Any:
        delay = 0.1
        refused = 0  # attempts in a row that a constraint refused
        while True:
            self._attempts += 1
            try:
                return await self.store.run_batch(body)
            except StoreError as exc:
                # The in-memory state may hold effects of the rolled-back transaction.
                self.state = MatchState()
                self.store.wm.clear()
                self._recent.clear()
                if not exc.transient:
                    log.error("database error that retrying cannot fix; stopping", error=str(exc))
                    raise
                refused = refused + 1 if exc.constraint else 0
                if refused >= CONSTRAINT_RETRIES:
                    # Retried from the stored state and refused again: not a race but a
                    # bug or a damaged database. Stopping says so; retrying would wedge.
                    log.error("a constraint refused the batch every time; stopping",
                              error=str(exc), attempts=refused)
                    raise
                if self._stop.is_set() and delay > 1:
                    raise
                log.warning("database unavailable, retrying batch", error=str(exc),
                            retry_in_s=round(delay, 2))
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)

    async def _firing_rows(
        self, tx: SqlTx, firings: list[Firing], refs: dict[int, SignalRef]
    ) -> list[FiringRow]:
        """Render the commands of these firings (``refs`` plus stored signals as needed)."""
        if not firings:
            return []
        known = self._refs
        refs = dict(refs)
        missing = set()
        for f in firings:
            for seq in (f.cause_seq, *f.bindings.values()):
                if seq not in refs:
                    ref = known.get(seq)
                    if ref is None:
                        missing.add(seq)
                    else:
                        refs[seq] = ref
        if missing:
            refs.update(await tx.signal_refs(missing))
        issued = iso_now()
        now_ms = int(time.time() * 1000)
        out = []
        partition_of = self._partition_of
        for f in firings:
            cmd = build_command(f, refs, issued)
            cause = refs[f.cause_seq]
            part = partition_of.get(f.trigger.workflow)
            if part is None:
                part = partition_for(f.trigger.workflow.encode(), self._cmd_partitions or [0])
                if len(partition_of) < 100_000:
                    partition_of[f.trigger.workflow] = part
            out.append(FiringRow(
                command_id=f.command_id, trigger_id=f.trigger.id, trigger_version=f.trigger.version,
                tk=f.tk, generation=f.generation, cause_seq=f.cause_seq,
                consumed=None if f.consumed is None else encode(f.consumed), command=encode(cmd),
                workflow=f.trigger.workflow, source_topic=cause.topic,
                source_partition=cause.partition, cmd_partition=part,
                scan_from=self._cmd_end.get(part, 0), created_ms=now_ms,
                cause_offset=cause.offset, cause_signal=f"{cause.name}/{cause.id}",
            ))
        return out

    async def _publish(
        self, fired: Sequence[FiringRow], dead: Sequence[tuple[ConsumerRecord[Any, Any], str]]
    ) -> None:
        """Send dead letters and commands; return when the broker acknowledged all."""
        if fired or dead:
            await self._await_sends(await self._enqueue(fired, dead))

    async def _settle(self, *, final: bool = False) -> None:
        """Wait for the batch in flight: its sends acknowledged, then its offsets committed
        (``final``: the commit finished too, as before partitions are given up).

        A batch's commands are handed to the producer and the worker goes on to fetch
        and parse the next batch while the broker acknowledges them; the consumer
        offsets of a batch are committed only after that, so a crash in between
        re-reads records whose commands are stored (duplicates, recovered or skipped).
        """
        sends = self._inflight
        if sends is not None:
            await self._await_sends(sends)
            self._inflight = None
            if sends.offsets:
                # The commit is a round trip to the group coordinator; the next batch
                # need not wait for it, only the next commit (they stay in order).
                await self._committed()
                self._committing = asyncio.ensure_future(self._commit(sends.offsets))
        if final:
            await self._committed()

    async def _committed(self) -> None:
        task, self._committing = self._committing, None
        if task is not None:
            await task

    async def _enqueue(
        self, fired: Sequence[FiringRow], dead: Sequence[tuple[ConsumerRecord[Any, Any], str]]
    ) -> _Sends:
        """Hand dead letters and commands to the producer without waiting for acks."""
        sends = _Sends()
        for rec, reason in dead:
            log.warning("dead-lettered", topic=rec.topic, partition=rec.partition,
                        offset=rec.offset, error=reason)
            sends.dead.append((rec, reason, await self._send_dead(rec, reason)))
        sends.commands = await self._send_commands(fired)
        # A filtered-out debug call still costs its arguments and two lookups: ~1 us per
        # command, 1-2% of the hot path at info level.
        for f in fired if log.bind().is_enabled_for(logging.DEBUG) else ():
            log.debug("command issued", command_id=f.command_id, trigger=f.trigger_id,
                      generation=f.generation, workflow=f.workflow, topic=f.source_topic,
                      partition=f.source_partition, offset=f.cause_offset, signal=f.cause_signal,
                      command_partition=f.cmd_partition)
        return sends

    async def _send_commands(
        self, fired: Sequence[FiringRow]
    ) -> list[tuple[list[FiringRow], asyncio.Future[Any]]]:
        """Commands as produce batches, one or more per command partition."""
        producer = self._producer
        assert producer is not None
        by_part: dict[int, list[FiringRow]] = {}
        for f in fired:
            by_part.setdefault(f.cmd_partition, []).append(f)
        out: list[tuple[list[FiringRow], asyncio.Future[Any]]] = []
        topic = self.cfg.command_topic
        for part, rows in by_part.items():
            i = 0
            while i < len(rows):
                batch = producer.create_batch()
                start = i
                while i < len(rows):
                    f = rows[i]
                    if batch.append(timestamp=None, key=f.workflow.encode(),
                                    value=f.command.encode(),
                                    headers=[(CMD_HEADER, f.command_id.encode())]) is None:
                        break
                    i += 1
                if i == start:  # larger than a whole batch: alone, as a single send
                    f = rows[i]
                    i += 1
                    try:
                        fut = await producer.send(
                            topic, f.command.encode(), key=f.workflow.encode(), partition=part,
                            headers=[(CMD_HEADER, f.command_id.encode())])
                    except KafkaError as exc:
                        fut = _failed(exc)
                    out.append(([f], fut))
                    continue
                try:
                    fut = await producer.send_batch(batch, topic, partition=part)
                except KafkaError as exc:
                    fut = _failed(exc)
                out.append((rows[start:i], fut))
        return out

    async def _await_sends(self, sends: _Sends) -> None:
        """Wait for every ack; re-send only what failed, with backoff, until it succeeds."""
        delay = 0.2
        while True:
            futs = [f for _, f in sends.commands] + [f for _, _, f in sends.dead]
            results = await asyncio.gather(*futs, return_exceptions=True)
            n = len(sends.commands)
            failed_cmds: list[FiringRow] = []
            error: BaseException | None = None
            for (rows, _), res in zip(sends.commands, results[:n], strict=True):
                if isinstance(res, BaseException):
                    failed_cmds += rows
                    error = res
                elif res is not None:
                    end = res.offset + len(rows)
                    if end > self._cmd_end.get(res.partition, 0):
                        self._cmd_end[res.partition] = end
                    self._to_mark.extend(f.fid for f in rows)
            failed_dead = []
            for (rec, reason, _), res in zip(sends.dead, results[n:], strict=True):
                if isinstance(res, BaseException):
                    failed_dead.append((rec, reason))
                    error = res
            if error is None:
                return
            if not isinstance(error, (KafkaError, OSError)):
                raise error
            if self._stop.is_set():
                log.warning("stopping with unpublished commands; recovered at next start",
                            count=len(failed_cmds))
                raise error
            log.warning("publish failed, retrying", error=str(error) or type(error).__name__,
                        retry_in_s=round(delay, 1), commands=len(failed_cmds),
                        dead_letters=len(failed_dead))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            sends.dead = [(rec, reason, await self._send_dead(rec, reason))
                          for rec, reason in failed_dead]
            sends.commands = await self._send_commands(failed_cmds)

    async def _send_dead(self, rec: ConsumerRecord[Any, Any], reason: str) -> asyncio.Future[Any]:
        """Copy a record to the dead-letter topic, byte for byte where Kafka allows.

        Two records cannot be copied as they are: one with neither key nor value (Kafka
        clients refuse to send it; it goes with an empty key) and one larger than a
        produce request (it goes without its value, ``flagman-value-dropped`` giving the
        original size; the source position headers still locate the original).
        """
        producer = self._producer
        assert producer is not None
        headers = list(rec.headers or ()) + [
            ("flagman-error", reason.encode()),
            ("flagman-source-topic", rec.topic.encode()),
            ("flagman-source-partition", str(rec.partition).encode()),
            ("flagman-source-offset", str(rec.offset).encode()),
        ]
        key, value = rec.key, rec.value
        if key is None and value is None:
            key = b""
            headers = [*headers, ("flagman-null-key", b"true")]
        fut: asyncio.Future[Any]
        try:
            try:
                fut = await producer.send(self.cfg.dlq_topic, value, key=key, headers=headers)
            except MessageSizeTooLargeError:
                size = len(value or b"")
                log.warning("dead letter too large to copy; sent without its value",
                            topic=rec.topic, partition=rec.partition, offset=rec.offset,
                            size=size)
                fut = await producer.send(
                    self.cfg.dlq_topic, None, key=key if key is not None else b"",
                    headers=[*headers, ("flagman-value-dropped", str(size).encode())],
                )
        except KafkaError as exc:  # e.g. no metadata while the broker is away: retried
            fut = _failed(exc)
        return fut

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # Another member owns these partitions now; it re-reads them and finds
            # duplicates only: nothing is lost or issued twice.
            log.warning("offset commit failed", error=str(exc) or type(exc).__name__)

    # -- recovery ----------------------------------------------------------------
    async def recover(self, assigned: Iterable[TopicPartition]) -> None:
        """Publish stored commands caused on these partitions that never reached the topic."""
        from .kafka_compat import read_to_end

        await self._settle()  # what is in flight is acknowledged first, not looked for

        by_topic: dict[str, list[int]] = {}
        for tp in assigned:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        pending = []
        for topic, parts in by_topic.items():
            pending += await self._pending(topic, parts)
        if not pending:
            return
        start: dict[int, int] = {}
        for p in pending:
            start[p.cmd_partition] = min(start.get(p.cmd_partition, p.scan_from), p.scan_from)
        found: set[str] = set()
        records = await read_to_end(
            self.cfg.bootstrap, self.cfg.command_topic, from_offsets=start, only_listed=True,
            client_kwargs={k: v for k, v in self.cfg.kafka_kwargs().items() if k != "bootstrap_servers"},
        )
        for rec in records:
            for k, v in rec.headers or ():
                if k == CMD_HEADER and v is not None:
                    found.add(v.decode())
        todo = [p for p in pending if p.command_id not in found]
        already = [p.fid for p in pending if p.command_id in found]
        rows = [
            FiringRow(p.command_id, "", 0, "", 0, 0, None, p.command, p.workflow, "", 0,
                      p.cmd_partition, p.scan_from, 0, fid=p.fid)
            for p in todo
        ]
        if rows:
            marked = len(self._to_mark)
            await self._publish(rows, [])
            del self._to_mark[marked:]  # marked below, with those already on the topic
        await self.store.mark_published(already + [p.fid for p in todo])
        log.info("recovered pending commands", found_on_topic=len(already), published=len(todo))

    async def _pending(self, topic: str, parts: list[int]) -> Any:
        delay = 0.1
        while True:
            try:
                return await self.store.pending(topic, parts)
            except StoreError as exc:
                log.warning("database unavailable during recovery", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


CONSTRAINT_RETRIES = 5
"""Attempts in a row a constraint may refuse a batch before the worker stops."""

GC_THRESHOLDS = (1_000_000, 20, 100)
"""The collector's thresholds in a worker process (Python's default is 700, 10, 10).

Each batch ends with a young collection and ``gc.freeze()``: what survives it is out
of the collector's sight, so a collection only ever looks at objects made since, to
find cycles among them (none are made on the hot path; bench/inproc.py counts them).
Collections *during* a batch rescan all its live objects (the parsed records, rows,
plans) and find nothing. At the default, a 5,000-record batch ran about 150 young and
13 middle collections and one full one: 10-12% of the time at 100k triggers. At
50,000 (session 7) it still ran one or two young collections of ~25 ms per batch, 4%
of the time. So the threshold is only a safety net for long stretches without batches
(a look-back over a large history), and the collection runs at the end of the batch,
when most of it is freed.
"""


def configure_gc() -> None:
    """Set the collector for a worker process (``GC_THRESHOLDS``)."""
    gc.set_threshold(*GC_THRESHOLDS)


def _positions(batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> dict[str, str]:
    """``topic/partition -> first-last`` offsets of a batch, for its log line."""
    return {f"{tp.topic}/{tp.partition}": f"{r[0].offset}-{r[-1].offset}"
            for tp, r in batch.items() if r}


def _signal_row(rec: ConsumerRecord[Any, Any], s: Signal) -> SignalRow:
    return SignalRow(
        name=s.name, sig_id=s.id, explicit_id=s.explicit_id, source=s.source, time=s.time,
        time_ms=s.time_ms, params=encode(s.params),
        payload=None if s.payload is None else encode(s.payload),
        encoding=s.encoding, topic=rec.topic, partition=rec.partition, offset=rec.offset,
        record_ts_ms=rec.timestamp,
    )


def _ref(seq: int, rec: ConsumerRecord[Any, Any], s: Signal) -> SignalRef:
    return SignalRef(seq=seq, name=s.name, id=s.id, topic=rec.topic, partition=rec.partition,
                     offset=rec.offset, time=s.time, params=s.params, payload=s.payload)
