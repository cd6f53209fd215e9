"""The matcher against isolated in-memory state: semantics of SPEC section 3."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from triggers import Matcher, MatchState, command_id, compile_trigger

DAY = "2026-11-25"


def leaf(table: str | None = None, name: str = "table_ready", **kw: Any) -> dict[str, Any]:
    where = dict(kw.pop("where", {}))
    if table is not None:
        where["table"] = {"eq": table}
    return {
        "signal": name,
        "where": where,
        "as": kw.pop("as_", None),
        "join_as": kw.pop("join_as", {}),
    }


def trig(
    tid: str, when: dict[str, Any], join: list[str] | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "id": tid,
        "workflow": kw.pop("workflow", "wf"),
        "step": None,
        "owner": None,
        "description": None,
        "when": when,
        "join": ["dt"] if join is None else join,
        "on_update": kw.pop("on_update", "ignore"),
        "params": {},
        "lookback_s": 604800,
    }


class Harness:
    """A matcher plus state, fed one signal at a time like the worker does."""

    def __init__(self, *defs: dict[str, Any]) -> None:
        self.m = Matcher()
        for d in defs:
            self.m.index.install(compile_trigger(d, 1, self.m.index.registry))
        self.state = MatchState()
        self.seq = itertools.count(1)
        self.fired: list[tuple[str, Any, int]] = []

    def send(self, *signals: tuple[str, dict[str, Any]]) -> list[tuple[str, Any, int]]:
        plan = self.m.plan(signals)
        fx = self.m.apply(self.state, plan, [next(self.seq) for _ in signals])
        out = [(f.trigger.id, f.join, f.generation) for f in fx.firings]
        self.fired.extend(out)
        return out


def tr(table: str, dt: Any = DAY, **params: Any) -> tuple[str, dict[str, Any]]:
    return ("table_ready", {"table": table, "dt": dt, **params})


def test_all_fires_once_per_tuple_after_last_part() -> None:
    h = Harness(trig("t", {"all": [leaf("db.orders"), leaf("db.refunds")]}))
    assert h.send(tr("db.orders")) == []
    assert h.send(tr("db.refunds")) == [("t", {"dt": DAY}, 0)]
    assert h.send(tr("db.orders"), tr("db.refunds")) == []  # fired tuple, on_update ignore
    assert h.send(tr("db.orders", "2026-11-26"), tr("db.refunds", "2026-11-26")) == [
        ("t", {"dt": "2026-11-26"}, 0)
    ]


def test_join_values_keep_json_type() -> None:
    h = Harness(trig("t", {"all": [leaf("a"), leaf("b")]}))
    h.send(tr("a", 7), tr("b", "7"))
    assert h.fired == []
    h.send(tr("b", 7))
    assert h.fired == [("t", {"dt": 7}, 0)]


def test_signal_lacking_join_param_never_contributes() -> None:
    h = Harness(trig("t", leaf("a")))
    assert h.send(("table_ready", {"table": "a"})) == []


def test_join_as_uses_renamed_param_even_when_own_name_present() -> None:
    h = Harness(trig("t", {"all": [leaf("a"), leaf("b", join_as={"dt": "ds"})]}))
    h.send(tr("a", DAY), ("table_ready", {"table": "b", "ds": "2026-01-01", "dt": DAY}))
    assert h.fired == []
    h.send(tr("a", "2026-01-01"))
    assert h.fired == [("t", {"dt": "2026-01-01"}, 0)]


def test_any_and_at_least() -> None:
    h = Harness(
        trig("any", {"any": [leaf("a"), leaf("b")]}),
        trig("two", {"at_least": {"count": 2, "of": [leaf("a"), leaf("b"), leaf("c")]}}),
    )
    assert h.send(tr("b")) == [("any", {"dt": DAY}, 0)]
    assert h.send(tr("c")) == [("two", {"dt": DAY}, 0)]
    assert h.send(tr("a")) == []


def test_refire_issues_next_generation_per_new_matching_signal() -> None:
    h = Harness(trig("r", {"all": [leaf("a"), leaf("b")]}, on_update="refire"))
    h.send(tr("a"), tr("b"))
    assert h.fired == [("r", {"dt": DAY}, 0)]
    h.send(tr("a", extra=1))
    h.send(tr("z"))  # matches no leaf
    h.send(tr("b", extra=2))
    assert [f[2] for f in h.fired] == [0, 1, 2]


def test_no_join_pairs_signals_one_firing_per_new_signal_of_every_leaf() -> None:
    h = Harness(trig("nj", {"all": [leaf("a"), leaf("b")]}, join=[]))
    h.send(tr("a"), tr("a", "x"))
    assert h.send(tr("b")) == [("nj", None, 0)]
    assert h.send(tr("b", "y")) == [("nj", None, 1)]  # the second a was waiting
    assert h.send(tr("b", "z")) == []  # every a is used up: b waits for a new a
    assert h.send(tr("a", "w")) == [("nj", None, 2)]


@settings(max_examples=80, deadline=None)
@given(st.permutations(["a"] * 4 + ["b"] * 6), st.integers(min_value=1, max_value=4))
def test_no_join_count_does_not_depend_on_order(order: list[str], batch: int) -> None:
    """all(a, b) without join fires min(#a, #b) times, however they interleave."""
    h = Harness(trig("nj", {"all": [leaf("a"), leaf("b")]}, join=[]))
    signals = [tr(t, f"v{i}") for i, t in enumerate(order)]
    for i in range(0, len(signals), batch):
        h.send(*signals[i : i + batch])
    assert [g for _, _, g in h.fired] == [0, 1, 2, 3]


def test_one_leaf_no_join_fires_per_distinct_signal() -> None:
    h = Harness(trig("one", leaf("a"), join=[]))
    h.send(tr("a", 1), tr("a", 2), tr("a", 3))
    assert h.fired == [("one", None, 0), ("one", None, 1), ("one", None, 2)]


def test_where_operators() -> None:
    w = {"region": {"in": ["us", "eu"]}, "rows": {"gte": 10, "lt": 100}, "dt": {"prefix": "2026-"}}
    h = Harness(trig("w", leaf("a", where=w)))
    assert h.send(tr("a", "2026-01-01", region="apac", rows=50)) == []
    assert h.send(tr("a", "2026-01-01", region="us", rows="50")) == []  # across types: false
    assert h.send(tr("a", "2026-01-01", region="us", rows=100)) == []
    assert h.send(tr("a", "2026-01-01", region="us", rows=10.5)) == [("w", {"dt": "2026-01-01"}, 0)]
    assert h.send(tr("a", "2025-01-01", region="us", rows=11)) == []


def test_exists_false_and_ne() -> None:
    h = Harness(trig("e", leaf("a", where={"draft": {"exists": False}, "region": {"ne": "us"}})))
    assert h.send(tr("a", "1", draft=True, region="eu")) == []
    assert h.send(tr("a", "2", region="us")) == []
    assert h.send(tr("a", "3")) == []  # missing param fails ne
    assert h.send(tr("a", "4", region="eu")) == [("e", {"dt": "4"}, 0)]


def test_bool_is_not_number() -> None:
    h = Harness(trig("b", leaf("a", where={"flag": {"eq": 1}})))
    assert h.send(tr("a", "1", flag=True)) == []
    assert h.send(tr("a", "2", flag=1.0)) == [("b", {"dt": "2"}, 0)]


def test_command_id_is_sha256_of_jcs() -> None:
    import hashlib

    expected = hashlib.sha256(b'["t",{"dt":"2026-11-25"},0]').hexdigest()
    assert command_id("t", {"dt": DAY}, 0) == expected
    assert command_id("t", None, 3) == hashlib.sha256(b'["t",null,3]').hexdigest()


def test_index_touches_only_relevant_leaf_classes() -> None:
    defs = [trig(f"t{i}", leaf(f"db.t{i}")) for i in range(1000)]
    h = Harness(*defs)
    assert len(h.m.index.candidates("table_ready", {"table": "db.t5", "dt": DAY})) == 1
    assert h.m.index.candidates("other", {"table": "db.t5"}) == []


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(6))), st.integers(min_value=1, max_value=3))
def test_order_of_arrival_does_not_matter(order: list[int], batch: int) -> None:
    """Any arrival order and batching gives the same set of firings (join triggers)."""
    sigs = [
        tr("a", "d1"),
        tr("b", "d1"),
        tr("a", "d2"),
        tr("c", "d2"),
        tr("b", "d2"),
        tr("c", "d1"),
    ]
    defs = (
        trig("ab", {"all": [leaf("a"), leaf("b")]}),
        trig("abc", {"all": [leaf("a"), leaf("b"), leaf("c")]}),
        trig("2of", {"at_least": {"count": 2, "of": [leaf("a"), leaf("b"), leaf("c")]}}),
    )
    h = Harness(*defs)
    seq = [sigs[i] for i in order]
    for i in range(0, len(seq), batch):
        h.send(*seq[i : i + batch])
    got = sorted((t, j["dt"], g) for t, j, g in h.fired)
    assert got == sorted(
        [
            ("ab", "d1", 0),
            ("ab", "d2", 0),
            ("abc", "d1", 0),
            ("abc", "d2", 0),
            ("2of", "d1", 0),
            ("2of", "d2", 0),
        ]
    )


def test_backfill_counts_history_once() -> None:
    h = Harness()
    history = [(1, *tr("a")), (2, *tr("b")), (3, *tr("a", "d2"))]
    t = compile_trigger(trig("late", {"all": [leaf("a"), leaf("b")]}), 1, h.m.index.registry)
    h.m.index.install(t)
    planned, tks = h.m.backfill_plan(t, history)
    fx = h.m.backfill_apply(h.state, t, planned)
    assert [(f.trigger.id, f.join, f.generation) for f in fx.firings] == [("late", {"dt": DAY}, 0)]
    assert tks == {'["2026-11-25"]', '["d2"]'}


def test_lookback_horizon_excludes_old_hits() -> None:
    h = Harness()
    h.send(tr("a"))  # seq 1, before the trigger's horizon
    t = compile_trigger(trig("t", {"all": [leaf("a"), leaf("b")]}), 1, h.m.index.registry)
    t.min_seq = 2
    h.m.index.install(t)
    assert h.send(tr("b")) == []
    assert h.send(tr("a", extra=1)) == [("t", {"dt": DAY}, 0)]


@settings(max_examples=300, deadline=None)
@given(
    st.text(min_size=1, max_size=20),
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
        st.one_of(st.text(max_size=30), st.integers(-(2**53) + 1, 2**53 - 1), st.booleans(),
                  st.floats(allow_nan=False, allow_infinity=False)),
        min_size=1, max_size=4,
    ),
    st.integers(0, 10**6),
)
def test_fast_ids_equal_rfc8785(tid: str, join: dict[str, Any], gen: int) -> None:
    """The orjson fast path gives the same bytes as the reference RFC 8785 encoder."""
    import hashlib

    import rfc8785

    from triggers import tuple_key

    assert command_id(tid, join, gen) == hashlib.sha256(rfc8785.dumps([tid, join, gen])).hexdigest()
    assert tuple_key(list(join.values())) == rfc8785.dumps(list(join.values())).decode()
    assert tuple_key(tuple(join.values())) == tuple_key(list(join.values()))


def test_ids_of_values_orjson_refuses_take_the_slow_path() -> None:
    """Integers beyond 64 bits: orjson refuses them; the id is still the JSON text's."""
    import hashlib

    from triggers import tuple_key

    big = 2**70
    assert tuple_key([big, "x"]) == f'[{big},"x"]'
    assert command_id("t", {"n": big}, 1) == hashlib.sha256(f'["t",{{"n":{big}}},1]'.encode()).hexdigest()
