"""The compact compiled form and the slim structures built from it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from triggers import (
    LeafClassRegistry,
    Matcher,
    compact_form,
    compile_compact,
    compile_trigger,
)

WHERES: list[dict[str, Any]] = [
    {},
    {"table": {"eq": "db.orders"}},
    {"n": {"eq": 7}},
    {"n": {"eq": 1.5}},
    {"flag": {"eq": True}},
    {"region": {"in": ["us", "eu"]}},
    {"region": {"not_in": ["us", 3]}},
    {"table": {"prefix": "db.t00"}},
    {"dt": {"gte": "2026-11-01", "lt": "2026-12-01"}},
    {"table": {"eq": "db.orders"}, "region": {"exists": False}},
    {"x": {"exists": True}},
]


def _definition(**kw: Any) -> dict[str, Any]:
    d = {
        "id": "t.one", "workflow": "wf", "step": "s", "owner": None, "description": None,
        "when": {"all": [
            {"signal": "a", "where": {"table": {"eq": "db.a"}}, "as": "first", "join_as": {}},
            {"any": [
                {"signal": "b", "where": {}, "as": None, "join_as": {"dt": "ds"}},
                {"at_least": {"count": 1, "of": [
                    {"signal": "c", "where": {"r": {"in": ["x", 2]}}, "as": None, "join_as": {}},
                ]}},
            ]},
        ]},
        "join": ["dt"], "on_update": "refire", "params": {"p": {"template": "{dt}"}, "n": 3},
        "lookback_s": 3600,
    }
    d.update(kw)
    return d


def test_compiled_trigger_keeps_every_field() -> None:
    t = compile_trigger(_definition(), 4, LeafClassRegistry())
    assert (t.id, t.version, t.workflow, t.step) == ("t.one", 4, "wf", "s")
    assert t.params == {"p": {"template": "{dt}"}, "n": 3}
    assert t.join == ("dt",) and t.refire and t.lookback_s == 3600
    assert t.tree == ("all", (("leaf", 0), ("any", (("leaf", 1), ("atl", 1, (("leaf", 2),))))))
    assert not t.all_leaves and t.full_mask == 0b111
    leaves = t.leaves
    assert [(x.index, x.label, x.alias, x.path) for x in leaves] == [
        (0, "first", "first", "when.all[0]"),
        (1, "when.all[1].any[0]", None, "when.all[1].any[0]"),
        (2, "when.all[1].any[1].at_least.of[0]", None, "when.all[1].any[1].at_least.of[0]"),
    ]
    assert [x.lc.join_src for x in leaves] == [("dt",), ("ds",), ("dt",)]
    assert t.lc_keys == tuple(x.lc.key for x in leaves)


def test_leaf_class_key_is_unchanged() -> None:
    # stored hits are keyed by it: the formula must not drift
    t = compile_trigger(_definition(), 1, LeafClassRegistry())
    text = json.dumps(["a", {"table": {"eq": "db.a"}}, ["dt"]], sort_keys=True, separators=(",", ":"))
    assert t.lcs[0].key == hashlib.sha256(text.encode()).hexdigest()[:24]


@pytest.mark.parametrize("where", WHERES)
def test_where_round_trips(where: dict[str, Any]) -> None:
    d = _definition(when={"signal": "s", "where": where, "as": None, "join_as": {}})
    t = compile_trigger(d, 1, LeafClassRegistry())
    assert t.lcs[0].where == where
    assert t.all_leaves and t.tree == ("leaf", 0) and t.leaves[0].path == "when"


def test_same_leaves_and_pieces_are_shared() -> None:
    reg = LeafClassRegistry()
    a = compile_trigger(_definition(id="a"), 1, reg)
    b = compile_trigger(_definition(id="b"), 1, reg)
    assert a.lcs == b.lcs and all(x is y for x, y in zip(a.lcs, b.lcs, strict=True))
    assert a.form is b.form and a.params is b.params and a.workflow is b.workflow


def test_compact_form_is_plain_text_and_versioned() -> None:
    text = compact_form(_definition())
    text.encode("ascii")
    t = compile_compact("t.one", 2, text, LeafClassRegistry())
    assert t.version == 2 and len(t.lcs) == 3
    with pytest.raises(ValueError):
        compile_compact("t.one", 2, "c0" + text[2:], LeafClassRegistry())


def test_no_params_and_no_step() -> None:
    t = compile_trigger(_definition(params={}, step=None, join=[]), 1, LeafClassRegistry())
    assert t.params == {} and t.step is None and t.join == () and t.join_object(None) is None


def _install(m: Matcher, d: dict[str, Any], version: int = 1) -> None:
    m.index.install(compile_trigger(d, version, m.index.registry))


def _leaf_trigger(tid: str, where: dict[str, Any]) -> dict[str, Any]:
    return _definition(id=tid, when={"signal": "s", "where": where, "as": None, "join_as": {}},
                       on_update="ignore")


def test_index_finds_exactly_the_accepting_classes() -> None:
    m = Matcher()
    for i, where in enumerate(WHERES):
        _install(m, _leaf_trigger(f"t{i}", where))
    signals: list[dict[str, Any]] = [
        {"table": "db.orders"}, {"table": "db.orders", "region": "us"}, {"n": 7}, {"n": 7.0},
        {"n": True}, {"n": 1.5}, {"flag": True}, {"flag": 1}, {"region": "us"},
        {"region": 3}, {"region": "apac"}, {"table": "db.t001"}, {"table": "db.t0"},
        {"dt": "2026-11-05"}, {"dt": "2026-12-05"}, {"x": None}, {},
    ]
    classes = {lc.key: lc for t in m.index.triggers.values() for lc in t.lcs}
    for params in signals:
        got = {lc.key for lc in m.index.candidates("s", params)}
        want = {k for k, lc in classes.items() if lc.accepts(params)}
        assert got == want, params


def test_index_forgets_and_refiles_on_remove_and_replace() -> None:
    m = Matcher()
    prefixes = ["db.t", "db.t0", "db.t00", "db.u"]
    for i, p in enumerate(prefixes):
        _install(m, _leaf_trigger(f"p{i}", {"table": {"prefix": p}}))
    _install(m, _leaf_trigger("e", {"table": {"eq": "db.t001"}}))
    _install(m, _leaf_trigger("e2", {"table": {"eq": "db.t001"}, "z": {"exists": False}}))

    def found(v: str) -> set[str]:
        return {t.id for lc in m.index.candidates("s", {"table": v}) for t in lc.uses}

    assert found("db.t001") == {"p0", "p1", "p2", "e", "e2"}
    m.index.remove("p1")
    m.index.remove("e")
    assert found("db.t001") == {"p0", "p2", "e2"}
    # replacing a trigger by one with the same leaf keeps one shared leaf class
    _install(m, _leaf_trigger("p2", {"table": {"prefix": "db.t00"}}), version=2)
    _install(m, _leaf_trigger("q", {"table": {"prefix": "db.t00"}}))
    assert m.index.triggers["p2"].lcs[0] is m.index.triggers["q"].lcs[0]
    assert m.index.registry.by_key[m.index.triggers["q"].lcs[0].key] is m.index.triggers["q"].lcs[0]
    for tid in ("p0", "p2", "p3", "q", "e2"):
        m.index.remove(tid)
    assert found("db.t001") == set() and list(m.index.names()) == []
    assert m.index.registry.by_key == {}


def test_many_users_of_one_class() -> None:
    m = Matcher()
    for i in range(20):
        _install(m, _leaf_trigger(f"t{i}", {"table": {"eq": "db.a"}}))
    (lc,) = m.index.candidates("s", {"table": "db.a"})
    assert [t.id for t in lc.uses] == [f"t{i}" for i in range(20)]
    for i in range(0, 20, 2):
        m.index.remove(f"t{i}")
    assert [t.id for t in lc.uses] == [f"t{i}" for i in range(1, 20, 2)]
