"""The benchmark workload: a warehouse of daily-partitioned tables and the triggers over it.

Everything is deterministic from ``WorkloadConfig.seed``: the same config gives the same
trigger definitions, the same records in the same order, and so the same set of
expected command ids. That set is computed here straight from the semantics of SPEC
sections 3 and 4 (a join trigger on ``dt`` fires once per day its condition holds),
without flagman's matcher, so it can referee the worker.

Shape of the warehouse:

* ``T`` tables ``db.t000000`` … with one ``dt`` partition per day; a partition lands as
  one ``table_ready`` signal. A few partitions (``missing_rate``) never land in the
  window (failed or late loads), so not every trigger fires every day.
* ``W`` triggers, each waiting for 1–5 distinct tables joined on ``dt``. A leaf's
  ``where`` is mostly equality on ``table``, some ``in`` (either of two tables) and some
  ``prefix`` (any of ten tables). Most trees are ``all``; a share ends in an ``any``
  pair, a share is ``at_least: n-1 of n``. Some tables are hot (1% of tables take 20%
  of the reads), like dimension tables in a real warehouse.
* Records: each day's partitions in random order; 5% of signals are sent again a little
  later (same id: producer retries), 0.5% of records are malformed (DLQ-bound).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import rfc8785

SIGNAL = "table_ready"
LEAF_COUNTS = (1, 2, 3, 4, 5)
LEAF_WEIGHTS = (25, 25, 20, 15, 15)
_CUMULATIVE = tuple(zip(LEAF_COUNTS, itertools.accumulate(LEAF_WEIGHTS), strict=True))
_WEIGHT_TOTAL = sum(LEAF_WEIGHTS)
_SAFE = re.compile(r"[A-Za-z0-9._:/-]*")


@dataclass(frozen=True)
class WorkloadConfig:
    """Sizes and shares of the generated warehouse."""

    triggers: int = 100_000
    tables: int = 100_000
    days: int = 5
    seed: int = 7
    namespace: str = "db"
    first_day: str = "2026-11-01"
    duplicate_rate: float = 0.05
    malformed_rate: float = 0.005
    missing_rate: float = 0.02
    hot_share: float = 0.01
    hot_pick: float = 0.2
    in_share: float = 0.10
    prefix_share: float = 0.05
    any_share: float = 0.10
    at_least_share: float = 0.10


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record to produce; ``table``/``day`` are -1 for a malformed record."""

    key: bytes
    value: bytes
    sig_id: str | None
    table: int
    day: int


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """A trigger as the generator knows it: per leaf, the tables it accepts."""

    index: int
    shape: str  # leaf | all | any | at_least
    leaves: tuple[tuple[int, ...], ...]
    wheres: tuple[dict[str, dict[str, Any]], ...]


def command_id(trigger_id: str, join: dict[str, Any] | None, generation: int) -> str:
    """SPEC §4: SHA-256 of the RFC 8785 JSON of ``[trigger_id, join, generation]``.

    The common shape (plain ASCII id, ``{"dt": "YYYY-MM-DD"}``) is spelled out directly:
    there JCS is exactly this text, and the referee computes hundreds of thousands.
    """
    if (join is not None and len(join) == 1 and "dt" in join and isinstance(join["dt"], str)
            and _SAFE.fullmatch(trigger_id) and _SAFE.fullmatch(join["dt"])):
        text = f'["{trigger_id}",{{"dt":"{join["dt"]}"}},{int(generation)}]'.encode()
    else:
        text = rfc8785.dumps([trigger_id, join, generation])
    return hashlib.sha256(text).hexdigest()


class Workload:
    """The generator. Triggers are made once and cached; records are made on request."""

    def __init__(self, cfg: WorkloadConfig) -> None:
        self.cfg = cfg
        self.width = max(6, len(str(cfg.tables - 1)))
        step = max(1, round(1 / cfg.hot_share)) if cfg.hot_share > 0 else cfg.tables
        self.hot = list(range(0, cfg.tables, step))
        self._first = date.fromisoformat(cfg.first_day)
        self._specs: list[TriggerSpec] | None = None

    # -- names -----------------------------------------------------------------
    def table(self, i: int) -> str:
        return f"{self.cfg.namespace}.t{i:0{self.width}d}"

    def dt(self, day: int) -> str:
        return (self._first + timedelta(days=day)).isoformat()

    def trigger_id(self, i: int) -> str:
        ns = self.cfg.namespace
        return f"bench.job{i:07d}" if ns == "db" else f"bench.{ns}.job{i:07d}"

    # -- triggers --------------------------------------------------------------
    def specs(self) -> list[TriggerSpec]:
        if self._specs is None:
            self._specs = list(self.iter_specs())
        return self._specs

    def iter_specs(self) -> Iterator[TriggerSpec]:
        """Trigger specs in id order, without caching them (for a million triggers)."""
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:triggers:{cfg.namespace}")
        k_max = min(5, cfg.tables)
        for i in range(cfg.triggers):
            r = rng.random() * _WEIGHT_TOTAL
            k = min(next(n for n, c in _CUMULATIVE if r < c), k_max)
            picked: set[int] = set()
            while len(picked) < k:
                if self.hot and rng.random() < cfg.hot_pick:
                    picked.add(rng.choice(self.hot))
                else:
                    picked.add(rng.randrange(cfg.tables))
            leaves, wheres = [], []
            for t in sorted(picked):
                accepted, where = self._leaf(rng, t)
                leaves.append(accepted)
                wheres.append(where)
            r = rng.random()
            if k == 1:
                shape = "leaf"
            elif r < cfg.any_share:
                shape = "any"
            elif r < cfg.any_share + cfg.at_least_share:
                shape = "at_least"
            else:
                shape = "all"
            yield TriggerSpec(i, shape, tuple(leaves), tuple(wheres))

    def _leaf(self, rng: random.Random, t: int) -> tuple[tuple[int, ...], dict[str, Any]]:
        cfg = self.cfg
        r = rng.random()
        if r < cfg.in_share and cfg.tables > 1:
            other = rng.randrange(cfg.tables)
            while other == t:
                other = rng.randrange(cfg.tables)
            pair = tuple(sorted((t, other)))
            return pair, {"table": {"in": [self.table(x) for x in pair]}}
        if r < cfg.in_share + cfg.prefix_share:
            base = t - t % 10
            group = tuple(range(base, min(base + 10, cfg.tables)))
            return group, {"table": {"prefix": self.table(t)[:-1]}}
        return (t,), {"table": {"eq": self.table(t)}}

    def canonical(self, spec: TriggerSpec) -> dict[str, Any]:
        """The trigger's canonical definition (the form ``apply`` stores)."""
        nodes = [
            {"signal": SIGNAL, "where": w, "as": None, "join_as": {}} for w in spec.wheres
        ]
        when: dict[str, Any]
        if spec.shape == "leaf":
            when = nodes[0]
        elif spec.shape == "all":
            when = {"all": nodes}
        elif spec.shape == "any":
            tail = {"any": nodes[-2:]}
            when = tail if len(nodes) == 2 else {"all": [*nodes[:-2], tail]}
        else:
            when = {"at_least": {"count": len(nodes) - 1, "of": nodes}}
        i = spec.index
        return {
            "id": self.trigger_id(i), "workflow": f"{self.cfg.namespace}.wf{i // 8:06d}",
            "step": f"s{i % 8}", "owner": f"team{i % 50:02d}", "description": None,
            "when": when, "join": ["dt"], "on_update": "ignore", "params": {"run_date": {"template": "{dt}"}},
            "lookback_s": 604800,
        }

    def definitions(self) -> Iterator[dict[str, Any]]:
        for spec in self.iter_specs():
            yield self.canonical(spec)

    # -- signals ---------------------------------------------------------------
    def landed(self, days: Iterable[int]) -> dict[int, set[int]]:
        """Per day, the tables whose partition lands in the window."""
        out = {}
        for day in days:
            rng = random.Random(f"{self.cfg.seed}:missing:{day}")
            missing = set(rng.sample(range(self.cfg.tables), round(self.cfg.tables * self.cfg.missing_rate)))
            out[day] = {t for t in range(self.cfg.tables) if t not in missing}
        return out

    def signal(self, table: int, day: int, rng: random.Random) -> Record:
        name, dt = self.table(table), self.dt(day)
        sig_id = f"{name}/{dt}"
        value = {
            "name": SIGNAL, "params": {"table": name, "dt": dt}, "id": sig_id,
            "source": "etl.scheduler",
            "time": f"{dt}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
            "payload": {"rows": rng.randrange(1, 10_000_000)},
        }
        return Record(name.encode(), json.dumps(value, separators=(",", ":")).encode(), sig_id,
                      table, day)

    def records(self, days: Iterable[int]) -> list[Record]:
        """The record stream for these days: signals, re-sent duplicates, malformed ones."""
        days = list(days)
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:records:{days[0] if days else 0}")
        landed = self.landed(days)
        keyed: list[tuple[float, Record]] = []
        pos = 0
        for day in days:
            order = sorted(landed[day])
            rng.shuffle(order)
            for t in order:
                rec = self.signal(t, day, rng)
                keyed.append((pos, rec))
                if rng.random() < cfg.duplicate_rate:
                    keyed.append((pos + rng.randrange(1, 2000) + 0.5, rec))
                pos += 1
        n_bad = round(len(keyed) * cfg.malformed_rate / (1 - cfg.malformed_rate))
        for j in range(n_bad):
            keyed.append((rng.uniform(0, pos), malformed(j, self.dt(days[0] if days else 0))))
        keyed.sort(key=lambda kr: kr[0])
        return [r for _, r in keyed]

    def signal_params(self, n: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """``n`` distinct valid signals as (name, params), in stream order, day after day."""
        rng = random.Random(f"{self.cfg.seed}:params")
        day = 0
        while n > 0:
            order = list(range(self.cfg.tables))
            rng.shuffle(order)
            for t in order[:n]:
                yield SIGNAL, {"table": self.table(t), "dt": self.dt(day)}
            n -= min(n, len(order))
            day += 1

    # -- the referee -------------------------------------------------------------
    def expected(self, landed: dict[int, set[int]]) -> set[str]:
        """Command ids that exactly these landed partitions must produce (generation 0)."""
        out: set[str] = set()
        for spec in self.specs():
            tid = self.trigger_id(spec.index)
            for day, tables in landed.items():
                if satisfied(spec, tables):
                    out.add(command_id(tid, {"dt": self.dt(day)}, 0))
        return out


def landed_of(records: Iterable[Record]) -> dict[int, set[int]]:
    """Per day, the tables with at least one valid signal among ``records``."""
    out: dict[int, set[int]] = {}
    for r in records:
        if r.table >= 0:
            out.setdefault(r.day, set()).add(r.table)
    return out


def satisfied(spec: TriggerSpec, tables: set[int]) -> bool:
    """Whether the trigger's tree holds for one day on which ``tables`` landed."""
    ok = [any(t in tables for t in leaf) for leaf in spec.leaves]
    if spec.shape in ("leaf", "all"):
        return all(ok)
    if spec.shape == "any":
        return all(ok[:-2]) and (ok[-2] or ok[-1])
    return sum(ok) >= len(ok) - 1


_MALFORMED = (
    lambda dt: b'{"name": "table_ready", "params": {"table": "db.x", "dt": "' + dt.encode(),
    lambda dt: b"\xff\xfe not utf-8 \x80",
    lambda dt: json.dumps({"name": "table_ready"}).encode(),
    lambda dt: json.dumps({"name": "table_ready", "params": {"table": {"db": "x"}, "dt": dt}}).encode(),
    lambda dt: b'{"name": "table_ready", "params": {"table": "db.x", "dt": "' + dt.encode() + b'", "rows": NaN}}',
    lambda dt: json.dumps({"name": "table ready!", "params": {"table": "db.x", "dt": dt}}).encode(),
    lambda dt: json.dumps([{"name": "table_ready"}]).encode(),
)


def malformed(j: int, dt: str) -> Record:
    """The j-th malformed record: each kind breaks one rule of SPEC §2."""
    return Record(b"malformed", _MALFORMED[j % len(_MALFORMED)](dt), None, -1, -1)
