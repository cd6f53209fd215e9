"""The matcher: pure decisions over an explicit, isolated state.

The worker, dry-run replay and tests drive the same code. A batch goes in two steps:

1. ``plan(signals)`` finds, per signal, the leaf classes that accept it and the join
   tuples it names. The runtime locks and refreshes exactly those tuples in its store
   (``plan.tuple_keys``), so several workers never decide on stale state.
2. ``apply(state, plan, seqs)`` walks the signals in order, records hits and returns
   the firings, mutating ``state``. Signals already known (duplicates) must have been
   removed by the caller: every signal given here is new.

State is kept per join tuple: per leaf class the latest signal seq that hit it, per
trigger the highest generation issued; and per trigger without join (``rounds``). A hit counts for a trigger only when its seq is
at least the trigger's ``min_seq`` (the look-back horizon fixed when it was applied).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._compile import CompiledTrigger, LeafClass, command_id, tuple_key
from ._index import TriggerIndex

NO_JOIN = "null"


@dataclass(slots=True)
class Round:
    """Progress of a trigger without join.

    Each leaf holds a queue of signals not yet used by a firing (ascending seq) and the
    highest seq a firing consumed. A firing takes the oldest signal of every leaf that
    has one, so ``all: [A, B]`` fires min(#A, #B) times whatever the arrival order.
    """

    next_gen: int = 0
    upto: dict[int, int] = field(default_factory=dict)
    queue: dict[int, list[int]] = field(default_factory=dict)

    def offer(self, leaf: int, seq: int) -> bool:
        """Queue an unconsumed signal for a leaf; False when it was consumed or queued."""
        if seq <= self.upto.get(leaf, 0):
            return False
        q = self.queue.get(leaf)
        if q is None:
            self.queue[leaf] = [seq]
            return True
        if not q or q[-1] < seq:
            q.append(seq)
            return True
        if seq in q:
            return False
        bisect.insort(q, seq)
        return True

    def consume(self, consumed: Mapping[int, int]) -> None:
        """Mark signals up to these seqs (per leaf) as used by a firing."""
        for leaf, upto in consumed.items():
            if upto > self.upto.get(leaf, 0):
                self.upto[leaf] = upto
            q = self.queue.get(leaf)
            if q:
                keep = [x for x in q if x > upto]
                if keep:
                    self.queue[leaf] = keep
                else:
                    del self.queue[leaf]


@dataclass(slots=True)
class TupleState:
    """What is known about one join tuple: hits per leaf class, firings per trigger."""

    hits: dict[str, int] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class MatchState:
    """Everything the matcher remembers, by join tuple key first.

    Keying by tuple lets a store load, refresh and evict whole tuples: a tuple not in
    ``tuples`` is simply unknown here (the store reloads it before it is used).
    """

    tuples: dict[str, TupleState] = field(default_factory=dict)
    rounds: dict[str, Round] = field(default_factory=dict)

    def tuple(self, tk: str) -> TupleState:
        t = self.tuples.get(tk)
        if t is None:
            t = self.tuples[tk] = TupleState()
        return t

    def hit(self, lc_key: str, tk: str) -> int | None:
        """The latest seq that hit this leaf class for this tuple, if any."""
        t = self.tuples.get(tk)
        return None if t is None else t.hits.get(lc_key)

    def fired_gen(self, trigger_id: str, tk: str) -> int | None:
        """The highest generation issued for this trigger and tuple, if any."""
        t = self.tuples.get(tk)
        return None if t is None else t.fired.get(trigger_id)

    def add_hit(self, lc_key: str, tk: str, seq: int) -> bool:
        """Record a hit; True when the (leaf class, tuple) had none before."""
        hits = self.tuple(tk).hits
        old = hits.get(lc_key)
        if old is None:
            hits[lc_key] = seq
            return True
        if seq > old:
            hits[lc_key] = seq
        return False

    def add_fired(self, trigger_id: str, tk: str, generation: int) -> None:
        fired = self.tuple(tk).fired
        if generation > fired.get(trigger_id, -1):
            fired[trigger_id] = generation

    def evict(self, tk: str) -> None:
        """Forget a tuple (the store must reload it from scratch before next use)."""
        self.tuples.pop(tk, None)


@dataclass(slots=True)
class Hit:
    lc_key: str
    tk: str
    seq: int


@dataclass(slots=True)
class Firing:
    """One satisfied (trigger, tuple, generation): becomes exactly one command."""

    trigger: CompiledTrigger
    tk: str
    join: dict[str, Any] | None
    generation: int
    command_id: str
    bindings: dict[int, int]
    cause_seq: int
    consumed: dict[int, int] | None = None
    """Triggers without join: per leaf, the highest seq this firing used up."""


@dataclass(slots=True)
class Planned:
    """One signal's candidates: (leaf class, tuple values, tuple key) triples."""

    name: str
    params: Mapping[str, Any]
    hits: list[tuple[LeafClass, tuple[Any, ...] | None, str]]


@dataclass(slots=True)
class Plan:
    signals: list[Planned]
    tuple_keys: set[str]


@dataclass(slots=True)
class Effects:
    hits: list[Hit] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)


class Matcher:
    """Decides firings. Holds the index; the state is passed in."""

    def __init__(self, index: TriggerIndex | None = None) -> None:
        self.index = index or TriggerIndex()

    # -- step 1 ----------------------------------------------------------------
    def plan_one(self, name: str, params: Mapping[str, Any]) -> Planned:
        out: list[tuple[LeafClass, tuple[Any, ...] | None, str]] = []
        for lc in self.index.candidates(name, params):
            if lc.join_src:
                values = lc.tuple_of(params)
                if values is None:
                    continue  # lacks a join param: never contributes
                out.append((lc, values, tuple_key(values)))
            else:
                out.append((lc, None, NO_JOIN))
        return Planned(name, params, out)

    def plan(self, signals: Iterable[tuple[str, Mapping[str, Any]]]) -> Plan:
        planned = [self.plan_one(n, p) for n, p in signals]
        tks = {tk for p in planned for _, _, tk in p.hits}
        return Plan(planned, tks)

    # -- step 2 ----------------------------------------------------------------
    def apply(self, state: MatchState, plan: Plan, seqs: Sequence[int | None]) -> Effects:
        """Walk planned signals in order; ``seqs[i] is None`` skips signal i (a duplicate)."""
        fx = Effects()
        for planned, seq in zip(plan.signals, seqs, strict=True):
            if seq is None or not planned.hits:
                continue
            self._one(state, planned, seq, fx)
        return fx

    def _one(self, state: MatchState, planned: Planned, seq: int, fx: Effects) -> None:
        hits = planned.hits
        if len(hits) == 1 and hits[0][2] != NO_JOIN:
            self._one_simple(state, hits[0], seq, fx)
            return
        touched: dict[tuple[str, str], tuple[CompiledTrigger, tuple[Any, ...] | None]] = {}
        refire: dict[tuple[str, str], tuple[CompiledTrigger, tuple[Any, ...] | None, int]] = {}
        for lc, values, tk in planned.hits:
            fx.hits.append(Hit(lc.key, tk, seq))
            new = state.add_hit(lc.key, tk, seq)
            if tk == NO_JOIN:
                for trig in dict.fromkeys(lc.uses):
                    rnd = state.rounds.get(trig.id)
                    if rnd is None:
                        rnd = state.rounds[trig.id] = Round()
                    if seq < trig.min_seq:
                        continue
                    for leaf_idx in lc.leaf_indexes(trig):
                        if rnd.offer(leaf_idx, seq):
                            touched[(trig.id, tk)] = (trig, None)
                continue
            if new:
                for trig in lc.uses:
                    touched[(trig.id, tk)] = (trig, values)
            else:
                for trig in lc.uses:
                    # a newer signal may bring an old leaf inside the look-back horizon
                    if trig.min_seq > 0 and state.fired_gen(trig.id, tk) is None:
                        touched[(trig.id, tk)] = (trig, values)
            for trig in lc.refire_uses:
                refire.setdefault((trig.id, tk), (trig, values, 0))

        for (tid, tk), (trig, values) in touched.items():
            if tk == NO_JOIN:
                self._round(state, trig, seq, fx)
                continue
            t = state.tuples[tk]  # add_hit created it
            if tid in t.fired or not self._holds(t.hits, trig):
                continue
            self._fire(state, trig, tk, values, 0, self._bindings(state, trig, tk), seq, fx)
            refire.pop((tid, tk), None)  # completing signal is part of generation 0

        for (tid, tk), (trig, values, _leaf) in refire.items():
            gen = state.fired_gen(tid, tk)
            if gen is None:
                continue
            bindings = self._bindings(state, trig, tk)
            mine = {lc.key for lc, _, t in planned.hits if t == tk}
            for i, leaf_lc in enumerate(trig.lcs):
                if leaf_lc.key in mine:
                    bindings[i] = seq
            self._fire(state, trig, tk, values, gen + 1, bindings, seq, fx)

    def _one_simple(
        self,
        state: MatchState,
        hit: tuple[LeafClass, tuple[Any, ...] | None, str],
        seq: int,
        fx: Effects,
    ) -> None:
        """The common case, kept tight: one leaf class, one join tuple."""
        lc, values, tk = hit
        fx.hits.append(Hit(lc.key, tk, seq))
        new = state.add_hit(lc.key, tk, seq)
        t = state.tuples[tk]
        fired, hits = t.fired, t.hits
        holds = self._holds
        completed: set[str] = set()
        for trig in lc.uses:
            tid = trig.id
            if tid in fired or not (new or trig.min_seq > 0):
                continue
            if trig.form.all_leaves and trig.min_seq == 0:
                for leaf_lc in trig.lcs:
                    if leaf_lc.key not in hits:
                        break
                else:
                    self._fire(state, trig, tk, values, 0, self._bindings(state, trig, tk),
                               seq, fx)
                    completed.add(tid)
                continue
            if holds(hits, trig):
                self._fire(state, trig, tk, values, 0, self._bindings(state, trig, tk), seq, fx)
                completed.add(tid)
        for trig in lc.refire_uses:
            gen = fired.get(trig.id)
            if gen is None or trig.id in completed:
                continue
            bindings = self._bindings(state, trig, tk)
            for i, leaf_lc in enumerate(trig.lcs):
                if leaf_lc is lc:
                    bindings[i] = seq
            self._fire(state, trig, tk, values, gen + 1, bindings, seq, fx)

    @staticmethod
    def _holds(hits: dict[str, int], trig: CompiledTrigger) -> bool:
        """Whether the tree holds for a tuple with these hits (the hot check: most
        touched triggers still miss a leaf, and ``all`` stops at the first)."""
        floor = trig.min_seq
        if trig.form.all_leaves:
            for lc in trig.lcs:
                s = hits.get(lc.key)
                if s is None or s < floor:
                    return False
            return True
        mask = 0
        for i, lc in enumerate(trig.lcs):
            s = hits.get(lc.key)
            if s is not None and s >= floor:
                mask |= 1 << i
        return trig.satisfied(mask)

    @staticmethod
    def _bindings(state: MatchState, trig: CompiledTrigger, tk: str) -> dict[int, int]:
        out: dict[int, int] = {}
        t = state.tuples.get(tk)
        if t is None:
            return out
        hits = t.hits
        floor = trig.min_seq
        for i, lc in enumerate(trig.lcs):
            s = hits.get(lc.key)
            if s is not None and s >= floor:
                out[i] = s
        return out

    def _round(
        self, state: MatchState, trig: CompiledTrigger, seq: int, fx: Effects, *, drain: bool = False
    ) -> None:
        """Fire while the queued signals satisfy the tree; ``drain`` (look-back) fires at
        most once and uses up every queued signal."""
        rnd = state.rounds[trig.id]
        while True:
            mask = 0
            for i in rnd.queue:
                mask |= 1 << i
            if not mask or not trig.satisfied(mask):
                return
            gen = rnd.next_gen
            bindings = {i: q[0] for i, q in rnd.queue.items()}
            consumed = {i: q[-1] for i, q in rnd.queue.items()} if drain else dict(bindings)
            fx.firings.append(
                Firing(trig, NO_JOIN, None, gen, command_id(trig.id, None, gen), bindings, seq,
                       consumed)
            )
            state.add_fired(trig.id, NO_JOIN, gen)
            rnd.next_gen = gen + 1
            rnd.consume(consumed)
            if drain:
                return

    @staticmethod
    def _fire(
        state: MatchState,
        trig: CompiledTrigger,
        tk: str,
        values: tuple[Any, ...] | None,
        gen: int,
        bindings: dict[int, int],
        seq: int,
        fx: Effects,
    ) -> None:
        join = trig.join_object(values)
        fx.firings.append(
            Firing(trig, tk, join, gen, command_id(trig.id, join, gen), bindings, seq)
        )
        state.add_fired(trig.id, tk, gen)

    # -- loading state -----------------------------------------------------------
    def absorb(
        self,
        state: MatchState,
        fired: Iterable[tuple[str, str, int, Mapping[int, int] | None]],
        hits: Iterable[tuple[str, str, int]],
    ) -> None:
        """Merge stored rows into ``state``: firings ``(trigger_id, tk, generation,
        consumed)`` first, then hits ``(lc_key, tk, seq)``. Rows may repeat."""
        rounds = state.rounds
        for tid, tk, gen, consumed in fired:
            state.add_fired(tid, tk, gen)
            if tk == NO_JOIN:
                rnd = rounds.get(tid)
                if rnd is None:
                    rnd = rounds[tid] = Round()
                if gen + 1 > rnd.next_gen:
                    rnd.next_gen = gen + 1
                if consumed:
                    rnd.consume(consumed)
        registry = self.index.registry.by_key
        for lc_key, tk, seq in hits:
            state.add_hit(lc_key, tk, seq)
            if tk != NO_JOIN:
                continue
            lc = registry.get(lc_key)
            if lc is None:
                continue
            for trig in dict.fromkeys(lc.uses):
                if seq < trig.min_seq:
                    continue
                rnd = rounds.get(trig.id)
                if rnd is None:
                    rnd = rounds[trig.id] = Round()
                for leaf_idx in lc.leaf_indexes(trig):
                    rnd.offer(leaf_idx, seq)

    # -- look-back ---------------------------------------------------------------
    def backfill_plan(
        self, trig: CompiledTrigger, history: Iterable[tuple[int, str, Mapping[str, Any]]]
    ) -> tuple[list[tuple[int, Hit, tuple[Any, ...] | None]], set[str]]:
        """Hits of stored signals ``(seq, name, params)`` on this trigger's leaf classes."""
        lcs = {lc.key: lc for lc in trig.lcs}
        by_name: dict[str, list[LeafClass]] = {}
        for lc in lcs.values():
            by_name.setdefault(lc.name, []).append(lc)
        out: list[tuple[int, Hit, tuple[Any, ...] | None]] = []
        tks: set[str] = set()
        for seq, name, params in history:
            if seq < trig.min_seq:
                continue
            for lc in by_name.get(name, ()):
                if not lc.accepts(params):
                    continue
                if lc.join_src:
                    values = lc.tuple_of(params)
                    if values is None:
                        continue
                    tk = tuple_key(values)
                else:
                    values, tk = None, NO_JOIN
                out.append((seq, Hit(lc.key, tk, seq), values))
                tks.add(tk)
        return out, tks

    def backfill_apply(
        self,
        state: MatchState,
        trig: CompiledTrigger,
        planned: list[tuple[int, Hit, tuple[Any, ...] | None]],
    ) -> Effects:
        """Evaluate a newly applied trigger against history: the state *now* counts.

        A join tuple satisfied by stored signals fires generation 0 once (no refires
        are replayed from history); a trigger without join fires at most once.
        """
        fx = Effects()
        values_of: dict[str, tuple[Any, ...] | None] = {}
        for _, hit, values in planned:
            fx.hits.append(hit)
            state.add_hit(hit.lc_key, hit.tk, hit.seq)
            values_of[hit.tk] = values
        if not trig.join:
            rnd = state.rounds.get(trig.id)
            if rnd is None:
                rnd = state.rounds[trig.id] = Round()
            leaf_of: dict[str, list[int]] = {}
            for i, lc in enumerate(trig.lcs):
                leaf_of.setdefault(lc.key, []).append(i)
            last = 0
            for seq, hit, _ in sorted(planned, key=lambda p: p[0]):
                for i in leaf_of.get(hit.lc_key, ()):
                    rnd.offer(i, seq)
                last = max(last, seq)
            if last:
                self._round(state, trig, last, fx, drain=True)
            return fx
        for tk, values in values_of.items():
            if state.fired_gen(trig.id, tk) is not None:
                continue
            bindings = self._bindings(state, trig, tk)
            mask = 0
            for i in bindings:
                mask |= 1 << i
            if trig.satisfied(mask):
                self._fire(state, trig, tk, values, 0, bindings, max(bindings.values()), fx)
        return fx
