"""Validation of single trigger definitions and their canonical form."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from triggers._errors import DefinitionError, DefinitionIssue, TriggerError
from triggers._spec import (
    DEFAULT_LOOKBACK_S,
    MAX_CONDITION_DEPTH,
    MAX_LEAVES,
    TriggerDef,
    format_path,
    validate_definition,
)


def trig(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "t1", "workflow": "wf", "when": {"signal": "s"}}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def leaf(where: Any = None, **kw: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"signal": "table_ready"}
    if where is not None:
        node["where"] = where
    node.update(kw)
    return node


def problems(obj: Any) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        validate_definition(obj, file="f.yaml")
    return [str(i) for i in info.value.issues]


def one_problem(obj: Any) -> str:
    found = problems(obj)
    assert len(found) == 1, found
    return found[0]


def where_of(where: Any) -> dict[str, Any]:
    normal: dict[str, Any] = validate_definition(trig(when=leaf(where))).when["where"]
    return normal


# -- the canonical form ---------------------------------------------------------------


def test_minimal_trigger_gets_all_defaults() -> None:
    t = validate_definition(trig())
    assert t.canonical() == {
        "id": "t1",
        "workflow": "wf",
        "step": None,
        "owner": None,
        "description": None,
        "when": {"signal": "s", "where": {}, "as": None, "join_as": {}},
        "join": [],
        "on_update": "ignore",
        "params": {},
        "lookback_s": DEFAULT_LOOKBACK_S,
    }
    assert t.lookback_s == 604800


def test_full_trigger_canonical_form() -> None:
    t = validate_definition(
        {
            "id": "revenue.daily.aggregate",
            "workflow": "revenue_daily",
            "step": "aggregate",
            "owner": "finance-data",
            "description": "daily revenue",
            "when": {
                "all": [
                    leaf({"table": "db.orders"}, **{"as": "orders"}),
                    leaf({"table": "db.refunds", "region": {"in": ["us", "eu"]}}),
                    {
                        "any": [
                            leaf({"table": "db.fx_rates"}),
                            {"signal": "fx_override", "join_as": {"dt": "date"}},
                        ]
                    },
                ]
            },
            "join": ["dt"],
            "on_update": "refire",
            "params": {"run_date": "{dt}", "rows": "{orders.payload.rows}", "n": 3, "plain": "x"},
            "lookback": "12h",
        }
    )
    c = t.canonical()
    assert c["when"] == {
        "all": [
            {
                "signal": "table_ready",
                "where": {"table": {"eq": "db.orders"}},
                "as": "orders",
                "join_as": {},
            },
            {
                "signal": "table_ready",
                "where": {"table": {"eq": "db.refunds"}, "region": {"in": ["us", "eu"]}},
                "as": None,
                "join_as": {},
            },
            {
                "any": [
                    {
                        "signal": "table_ready",
                        "where": {"table": {"eq": "db.fx_rates"}},
                        "as": None,
                        "join_as": {},
                    },
                    {"signal": "fx_override", "where": {}, "as": None, "join_as": {"dt": "date"}},
                ]
            },
        ]
    }
    assert c["params"] == {
        "run_date": {"template": "{dt}"},
        "rows": {"template": "{orders.payload.rows}"},
        "n": 3,
        "plain": "x",
    }
    assert (c["step"], c["owner"], c["description"]) == (
        "aggregate",
        "finance-data",
        "daily revenue",
    )
    assert c["join"] == ["dt"] and c["on_update"] == "refire" and c["lookback_s"] == 43200
    json.dumps(c)  # plain JSON


def test_bare_leaf_when_and_nested_combinators() -> None:
    assert validate_definition(trig(when=leaf())).when == {
        "signal": "table_ready",
        "where": {},
        "as": None,
        "join_as": {},
    }
    deep = {"all": [{"any": [{"at_least": {"count": 1, "of": [leaf(), {"all": [leaf()]}]}}]}]}
    when = validate_definition(trig(when=deep)).when
    assert when["all"][0]["any"][0]["at_least"]["count"] == 1
    assert when["all"][0]["any"][0]["at_least"]["of"][1]["all"][0]["signal"] == "table_ready"


def test_canonical_returns_a_fresh_copy() -> None:
    t = validate_definition(trig(when=leaf({"a": 1}), params={"x": [1]}))
    c = t.canonical()
    c["when"]["where"]["a"]["eq"] = 2
    c["params"]["x"].append(2)
    assert t.canonical()["when"]["where"]["a"] == {"eq": 1}
    assert t.canonical()["params"]["x"] == [1]


def test_digest_is_sha256_of_jcs_and_stable() -> None:
    import hashlib

    t = validate_definition(trig(params={"b": 1.5, "a": "{{x}}"}))
    assert t.digest() == hashlib.sha256(rfc8785.dumps(t.canonical())).hexdigest()
    assert len(t.digest()) == 64
    same = validate_definition(trig(params={"a": "{{x}}", "b": 1.5}))
    assert same.digest() == t.digest()  # key order does not matter
    other = validate_definition(trig(params={"a": "{{x}}", "b": 2.5}))
    assert other.digest() != t.digest()
    assert hash(t) == hash(same) and t == same


def test_from_canonical_round_trips_through_json() -> None:
    t = validate_definition(
        trig(
            when={
                "at_least": {
                    "count": 1,
                    "of": [leaf({"x": {"gte": 1, "lt": 9.5}}, **{"as": "a"}), leaf()],
                }
            },
            join=["dt"],
            params={"p": "{a.payload.x.0}", "lit": "{{not a ref}}", "deep": {"k": [1, None, True]}},
            lookback=0,
        )
    )
    back = TriggerDef.from_canonical(json.loads(json.dumps(t.canonical())))
    assert back == t
    assert back.digest() == t.digest()
    # a literal that looks like a template stays literal
    assert back.params["lit"] == "{not a ref}"


def test_from_canonical_rejects_non_canonical() -> None:
    c = validate_definition(trig()).canonical()
    c["lookback"] = "7d"
    with pytest.raises(DefinitionError) as info:
        TriggerDef.from_canonical(c)
    assert [str(i) for i in info.value.issues] == [
        "<canonical>: t1: unknown key 'lookback' (did you mean 'lookback_s'?)"
    ]
    c = validate_definition(trig()).canonical()
    c["lookback_s"] = -1
    with pytest.raises(DefinitionError):
        TriggerDef.from_canonical(c)
    c = validate_definition(trig()).canonical()
    c["params"] = {"p": {"template": "{nope}"}}
    with pytest.raises(DefinitionError):
        TriggerDef.from_canonical(c)


# -- where and operators -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("db.orders", {"eq": "db.orders"}),
        (7, {"eq": 7}),
        (2.5, {"eq": 2.5}),
        (True, {"eq": True}),
        ({"eq": "x"}, {"eq": "x"}),
        ({"ne": False}, {"ne": False}),
        ({"lt": 3}, {"lt": 3}),
        ({"lte": "2026-12-01"}, {"lte": "2026-12-01"}),
        ({"gt": -1.5}, {"gt": -1.5}),
        ({"gte": "2026-11-01", "lt": "2026-12-01"}, {"gte": "2026-11-01", "lt": "2026-12-01"}),
        ({"in": ["us", "eu", 3, True]}, {"in": ["us", "eu", 3, True]}),
        ({"not_in": ["apac"]}, {"not_in": ["apac"]}),
        ({"prefix": "db."}, {"prefix": "db."}),
        ({"exists": True}, {"exists": True}),
        ({"exists": False}, {"exists": False}),
        (
            {"prefix": "db.", "ne": "db.x", "exists": True},
            {"prefix": "db.", "ne": "db.x", "exists": True},
        ),
    ],
)
def test_where_operators_normalise(raw: Any, normal: dict[str, Any]) -> None:
    assert where_of({"p": raw}) == {"p": normal}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"inn": ["us"]}, "when.where.region: unknown operator 'inn'"),
        (
            None,
            "when.where.region: null is not a valid value (use {exists: false} for a missing param)",
        ),
        (["us", "eu"], "when.where.region: a list needs an operator, e.g. {in: [...]}"),
        (
            {},
            "when.where.region: no operator given (one of eq, ne, lt, lte, gt, gte, in, not_in, prefix, exists)",
        ),
        (
            {"eq": None},
            "when.where.region.eq: expected a string, a number or a boolean, got null (use {exists: false} for a missing param)",
        ),
        ({"eq": [1]}, "when.where.region.eq: expected a string, a number or a boolean, got list"),
        (
            {"ne": {"a": 1}},
            "when.where.region.ne: expected a string, a number or a boolean, got mapping",
        ),
        ({"lt": True}, "when.where.region.lt: expected a string or a number, got boolean"),
        (
            {"gte": None},
            "when.where.region.gte: expected a string or a number, got null (use {exists: false} for a missing param)",
        ),
        (
            {"in": []},
            "when.where.region.in: expected a non-empty list of strings, numbers or booleans, got an empty list",
        ),
        (
            {"in": "us"},
            "when.where.region.in: expected a non-empty list of strings, numbers or booleans, got string",
        ),
        (
            {"not_in": ["us", None]},
            "when.where.region.not_in[1]: expected a string, a number or a boolean, got null (use {exists: false} for a missing param)",
        ),
        (
            {"in": ["us", ["eu"]]},
            "when.where.region.in[1]: expected a string, a number or a boolean, got list",
        ),
        ({"prefix": 3}, "when.where.region.prefix: expected a string, got integer"),
        ({"exists": "yes"}, "when.where.region.exists: expected true or false, got string"),
        ({"exists": 1}, "when.where.region.exists: expected true or false, got integer"),
        (float("nan"), "when.where.region: numbers must be finite (no .nan or .inf)"),
        ({"lt": float("inf")}, "when.where.region.lt: numbers must be finite (no .nan or .inf)"),
        (2**53, "when.where.region: integer out of range (beyond ±(2^53-1))"),
        ("x" * 5000, "when.where.region: string longer than 4096 characters"),
    ],
)
def test_where_errors(raw: Any, message: str) -> None:
    assert one_problem(trig(when=leaf({"region": raw}))) == f"f.yaml: t1: {message}"


def test_unknown_operator_path_inside_all() -> None:
    obj = trig(when={"all": [leaf({"table": "x"}), leaf({"region": {"inn": ["us", "eu"]}})]})
    assert one_problem(obj) == "f.yaml: t1: when.all[1].where.region: unknown operator 'inn'"


def test_several_bad_operators_all_reported() -> None:
    obj = trig(when=leaf({"a": {"inn": [1], "eq": None}, "b": {"foo": 1}}))
    assert problems(obj) == [
        "f.yaml: t1: when.where.a: unknown operator 'inn'",
        "f.yaml: t1: when.where.a.eq: expected a string, a number or a boolean, got null (use {exists: false} for a missing param)",
        "f.yaml: t1: when.where.b: unknown operator 'foo'",
    ]


def test_where_shape_and_param_names() -> None:
    assert (
        one_problem(trig(when=leaf(["x"])))
        == "f.yaml: t1: when.where: expected a mapping of param name to predicate, got list"
    )
    assert (
        one_problem(trig(when=leaf({"bad name": 1})))
        == "f.yaml: t1: when.where: invalid param name 'bad name': expected [A-Za-z_][A-Za-z0-9_.-]{0,63}"
    )
    assert where_of({"a.b-c_d": 1}) == {"a.b-c_d": {"eq": 1}}


def test_in_list_limit() -> None:
    assert (
        one_problem(trig(when=leaf({"r": {"in": list(range(1025))}})))
        == "f.yaml: t1: when.where.r.in: more than 1024 items"
    )


# -- conditions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (
            "table_ready",
            "when: expected a condition (a mapping with signal, all, any or at_least), got string",
        ),
        ({}, "when: a condition needs one of 'signal', 'all', 'any', 'at_least'"),
        (
            {"sigal": "x"},
            "when: a condition needs one of 'signal', 'all', 'any', 'at_least'; unknown key 'sigal' (did you mean 'signal'?)",
        ),
        (
            {"x": 1, "y": 2},
            "when: a condition needs one of 'signal', 'all', 'any', 'at_least'; unknown keys 'x', 'y'",
        ),
        (
            {"signal": "s", "all": []},
            "when: a condition has exactly one of 'signal', 'all', 'any', 'at_least'; got 'signal', 'all'",
        ),
        ({"all": []}, "when.all: expected a non-empty list of conditions, got an empty list"),
        (
            {"any": {"signal": "s"}},
            "when.any: expected a non-empty list of conditions, got mapping",
        ),
        ({"all": [{"signal": "s"}], "join": ["dt"]}, "when: unknown key 'join'"),
        ({"all": [{"signal": "s"}], "as": "x"}, "when: unknown key 'as'"),
        (
            {"all": [{"signal": "s", "wher": {}}]},
            "when.all[0]: unknown key 'wher' (did you mean 'where'?)",
        ),
        ({"signal": "s", "x": 1, "y": 2}, "when: unknown keys 'x', 'y'"),
        (
            {"signal": "has space"},
            "when.signal: expected a signal name of 1-200 characters of A-Z a-z 0-9 _ . : -, got 'has space'",
        ),
        (
            {"signal": 5},
            "when.signal: expected a signal name of 1-200 characters of A-Z a-z 0-9 _ . : -, got integer",
        ),
        (
            {"signal": "x" * 201},
            "when.signal: expected a signal name of 1-200 characters of A-Z a-z 0-9 _ . : -, got '"
            + "x" * 60
            + "...'",
        ),
        (
            {"at_least": {"count": 3, "of": [{"signal": "a"}, {"signal": "b"}]}},
            "when.at_least.count: must be between 1 and 2 (the number of conditions in 'of'), got 3",
        ),
        (
            {"at_least": {"count": 0, "of": [{"signal": "a"}]}},
            "when.at_least.count: must be between 1 and 1 (the number of conditions in 'of'), got 0",
        ),
        (
            {"at_least": {"count": "2", "of": [{"signal": "a"}]}},
            "when.at_least.count: expected an integer, got string",
        ),
        (
            {"at_least": {"count": True, "of": [{"signal": "a"}]}},
            "when.at_least.count: expected an integer, got boolean",
        ),
        ({"at_least": {"of": [{"signal": "a"}]}}, "when.at_least: missing required key 'count'"),
        (
            {"at_least": {"count": 1, "of": []}},
            "when.at_least.of: expected a non-empty list of conditions, got an empty list",
        ),
        (
            {"at_least": {"count": 1, "of": [{"signal": "a"}], "min": 1}},
            "when.at_least: unknown key 'min'",
        ),
        ({"at_least": [1]}, "when.at_least: expected a mapping with 'count' and 'of', got list"),
        (
            {"signal": "s", "as": "has-dash"},
            "when.as: invalid alias 'has-dash': expected [A-Za-z_][A-Za-z0-9_]{0,63}",
        ),
        (
            {"signal": "s", "as": 1},
            "when.as: invalid alias integer: expected [A-Za-z_][A-Za-z0-9_]{0,63}",
        ),
        (
            {"signal": "s", "join_as": ["dt"]},
            "when.join_as: expected a mapping of join key to param name, got list",
        ),
    ],
)
def test_condition_errors(when: Any, message: str) -> None:
    assert one_problem(trig(when=when)) == f"f.yaml: t1: {message}"


def test_duplicate_alias() -> None:
    obj = trig(when={"all": [leaf(**{"as": "o"}), {"any": [leaf(**{"as": "o"})]}]})
    assert (
        one_problem(obj)
        == "f.yaml: t1: when.all[1].any[0].as: alias 'o' is already used at when.all[0].as"
    )


def test_alias_and_join_key_collisions() -> None:
    assert (
        one_problem(trig(when=leaf(**{"as": "dt"}), join=["dt"]))
        == "f.yaml: t1: when.as: alias 'dt' is also a join key; rename one so '{dt}' is unambiguous"
    )
    assert (
        one_problem(trig(when=leaf(**{"as": "o"}), join=["o.rows"]))
        == "f.yaml: t1: join[0]: join key 'o.rows' reads like a field of alias 'o' in templates; rename one"
    )


def test_join_as() -> None:
    t = validate_definition(trig(when=leaf(join_as={"dt": "ds"}), join=["dt", "region"]))
    assert t.when["join_as"] == {"dt": "ds"}
    assert (
        one_problem(trig(when=leaf(join_as={"day": "ds"}), join=["dt"]))
        == "f.yaml: t1: when.join_as.day: 'day' is not a join key of this trigger (join: dt)"
    )
    assert (
        one_problem(trig(when=leaf(join_as={"dt": "ds"})))
        == "f.yaml: t1: when.join_as.dt: 'dt' is not a join key of this trigger (join: none)"
    )
    assert (
        one_problem(trig(when=leaf(join_as={"dt": "bad name"}), join=["dt"]))
        == "f.yaml: t1: when.join_as.dt: invalid param name 'bad name': expected [A-Za-z_][A-Za-z0-9_.-]{0,63}"
    )


def test_condition_depth_limit() -> None:
    node: dict[str, Any] = leaf()
    for _ in range(MAX_CONDITION_DEPTH - 1):
        node = {"all": [node]}
    validate_definition(trig(when=node))  # exactly at the limit
    node = {"all": [node]}
    found = one_problem(trig(when=node))
    assert found.endswith(f"conditions nested deeper than {MAX_CONDITION_DEPTH} levels")


def test_deep_condition_from_untrusted_json_does_not_recurse_forever() -> None:
    node: dict[str, Any] = leaf()
    for _ in range(50_000):
        node = {"all": [node]}
    assert one_problem(trig(when=node)).endswith("conditions nested deeper than 32 levels")


def test_leaf_limit() -> None:
    validate_definition(trig(when={"any": [leaf() for _ in range(MAX_LEAVES)]}))
    found = one_problem(trig(when={"any": [leaf() for _ in range(MAX_LEAVES + 1)]}))
    assert found == "f.yaml: t1: when: more than 256 signal conditions in one trigger"


# -- top-level keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([1], ["f.yaml: a trigger must be a mapping, got list"]),
        (
            {},
            [
                "f.yaml: missing required key 'id'",
                "f.yaml: missing required key 'workflow'",
                "f.yaml: missing required key 'when'",
            ],
        ),
        (trig(workflow=...), ["f.yaml: t1: missing required key 'workflow'"]),
        (
            trig(id="bad id"),
            ["f.yaml: id: expected 1-200 characters of A-Z a-z 0-9 _ . : -, got 'bad id'"],
        ),
        (trig(id=None), ["f.yaml: id: must not be null"]),
        (
            trig(id="x" * 201),
            [
                "f.yaml: id: expected 1-200 characters of A-Z a-z 0-9 _ . : -, got '"
                + "x" * 60
                + "...'"
            ],
        ),
        (
            trig(workflow=""),
            ["f.yaml: t1: workflow: expected 1-200 characters of A-Z a-z 0-9 _ . : -, got ''"],
        ),
        (
            trig(step="a b"),
            ["f.yaml: t1: step: expected 1-200 characters of A-Z a-z 0-9 _ . : -, got 'a b'"],
        ),
        (
            trig(step=3),
            ["f.yaml: t1: step: expected 1-200 characters of A-Z a-z 0-9 _ . : -, got integer"],
        ),
        (trig(owner=["a"]), ["f.yaml: t1: owner: expected a string, got list"]),
        (trig(owner="o" * 201), ["f.yaml: t1: owner: longer than 200 characters"]),
        (trig(description="d" * 4097), ["f.yaml: t1: description: longer than 4096 characters"]),
        (trig(stepp="x"), ["f.yaml: t1: unknown key 'stepp' (did you mean 'step'?)"]),
        (trig(zzz=1, yyy=2), ["f.yaml: t1: unknown keys 'zzz', 'yyy'"]),
        (trig(lookback_s=5), ["f.yaml: t1: unknown key 'lookback_s' (did you mean 'lookback'?)"]),
        (
            trig(on_update="always"),
            ["f.yaml: t1: on_update: expected 'ignore' or 'refire', got 'always'"],
        ),
        (trig(join="dt"), ["f.yaml: t1: join: expected a list of param names, got string"]),
        (trig(join=["dt", "dt"]), ["f.yaml: t1: join[1]: duplicate join key 'dt'"]),
        (
            trig(join=["1dt"]),
            [
                "f.yaml: t1: join[0]: invalid param name '1dt': expected [A-Za-z_][A-Za-z0-9_.-]{0,63}"
            ],
        ),
        (
            trig(join=[None]),
            [
                "f.yaml: t1: join[0]: invalid param name null: expected [A-Za-z_][A-Za-z0-9_.-]{0,63}"
            ],
        ),
        (trig(join=[f"k{i}" for i in range(33)]), ["f.yaml: t1: join: more than 32 join keys"]),
        (
            trig(lookback="soon"),
            [
                "f.yaml: t1: lookback: invalid duration 'soon': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds"
            ],
        ),
        (trig(lookback=-1), ["f.yaml: t1: lookback: duration must not be negative, got -1"]),
    ],
)
def test_top_level_errors(obj: Any, expected: list[str]) -> None:
    assert problems(obj) == expected


def test_optional_nulls_mean_defaults() -> None:
    t = validate_definition(
        trig(step=None, owner=None, join=None, params=None, on_update=None, lookback=None)
    )
    assert (t.step, t.owner, t.join, t.params, t.on_update, t.lookback_s) == (
        None,
        None,
        (),
        {},
        "ignore",
        604800,
    )


def test_every_problem_of_a_trigger_is_reported() -> None:
    obj = {
        "id": "t1",
        "workflow": "a b",
        "when": {
            "all": [leaf({"r": {"inn": 1}}), {"signal": "s", "as": "x", "join_as": {"q": "z"}}]
        },
        "params": {"p": "{y}"},
        "lookback": "1y",
        "extra": 1,
    }
    assert len(problems(obj)) == 6


def test_ids_accept_the_whole_charset() -> None:
    t = validate_definition(trig(id="a-Z_0.9:x", workflow="w:1", step="s.2"))
    assert (t.id, t.workflow, t.step) == ("a-Z_0.9:x", "w:1", "s.2")


# -- params and templates ----------------------------------------------------------


def test_params_literal_and_template_forms() -> None:
    t = validate_definition(
        trig(
            when=leaf(**{"as": "o"}),
            join=["dt", "a.b"],
            params={
                "s": "plain",
                "i": 1,
                "f": 1.5,
                "b": False,
                "n": None,
                "l": [1, "{dt}"],
                "d": {"k": "{dt}"},
                "t": "{dt}",
                "dotted": "{a.b}",
                "fields": "{o.id}/{o.table}/{o.payload}/{o.payload.a.0}",
                "esc": "{{dt}}",
                "mixed": "{{{dt}}}",
            },
        )
    )
    assert t.params == {
        "s": "plain",
        "i": 1,
        "f": 1.5,
        "b": False,
        "n": None,
        "l": [1, "{dt}"],  # strings nested in literals are not templates
        "d": {"k": "{dt}"},
        "t": {"template": "{dt}"},
        "dotted": {"template": "{a.b}"},
        "fields": {"template": "{o.id}/{o.table}/{o.payload}/{o.payload.a.0}"},
        "esc": "{dt}",
        "mixed": {"template": "{{{dt}}}"},
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "{dtt}",
            "params.p: unknown template reference '{dtt}': not a join key or alias of this trigger",
        ),
        (
            "{x.y}",
            "params.p: unknown template reference '{x.y}': 'x' is not an alias of this trigger",
        ),
        (
            "{o}",
            "params.p: template reference '{o}' names alias 'o' but no field: use {o.id}, {o.payload...} or {o.PARAM}",
        ),
        (
            "{o.payload..a}",
            "params.p: empty segment in payload path of template reference '{o.payload..a}'",
        ),
        ("{o.bad-}", None),
        ("{dt", "params.p: unbalanced '{' at position 0 (write '{{' for a literal brace)"),
        ("dt}", "params.p: unbalanced '}' at position 2 (write '}}' for a literal brace)"),
        (
            "{}",
            "params.p: invalid template reference '{}' (write '{{' and '}}' for literal braces)",
        ),
        (
            "{ dt }",
            "params.p: invalid template reference '{ dt }' (write '{{' and '}}' for literal braces)",
        ),
        (
            {"template": "{dt}"},
            "params.p: a mapping whose only key is 'template' is reserved; write the template as a plain string",
        ),
        (float("inf"), "params.p: numbers must be finite (no .nan or .inf)"),
        ([1, [2**60]], "params.p[1][0]: integer out of range (beyond ±(2^53-1))"),
        ({1: 2}, "params.p: mapping keys must be strings, got integer"),
        (b"x", "params.p: unsupported value of type bytes"),
    ],
)
def test_param_errors(value: Any, message: str | None) -> None:
    obj = trig(when=leaf(**{"as": "o"}), join=["dt"], params={"p": value})
    if message is None:
        validate_definition(obj)  # a dash is allowed in param names
    else:
        assert one_problem(obj) == f"f.yaml: t1: {message}"


def test_join_key_template_needs_join() -> None:
    assert (
        one_problem(trig(params={"d": "{dt}"}))
        == "f.yaml: t1: params.d: unknown template reference '{dt}': not a join key or alias of this trigger"
    )


def test_param_name_and_shape_errors() -> None:
    assert (
        one_problem(trig(params=[1]))
        == "f.yaml: t1: params: expected a mapping of param name to value, got list"
    )
    assert (
        one_problem(trig(params={"bad name": 1}))
        == "f.yaml: t1: params: invalid param name 'bad name': expected [A-Za-z_][A-Za-z0-9_.-]{0,63}"
    )
    assert (
        one_problem(trig(params={f"p{i}": i for i in range(257)}))
        == "f.yaml: t1: params: more than 256 params"
    )


def test_deeply_nested_literal_param_is_bounded() -> None:
    value: Any = 1
    for _ in range(10_000):
        value = [value]
    assert one_problem(trig(params={"p": value})).endswith("value nested deeper than 32 levels")


# -- issues ------------------------------------------------------------------------


def test_issue_format_omits_missing_parts() -> None:
    full = DefinitionIssue(
        "orders.yaml",
        "revenue.daily.aggregate",
        "when.all[1].where.region",
        "unknown operator 'inn'",
        12,
    )
    assert (
        str(full)
        == "orders.yaml:12: revenue.daily.aggregate: when.all[1].where.region: unknown operator 'inn'"
    )
    assert str(DefinitionIssue("f.yaml", None, "", "bad", None)) == "f.yaml: bad"
    assert str(DefinitionIssue("f.yaml", "t", "", "bad", 3)) == "f.yaml:3: t: bad"


def test_definition_error_is_a_trigger_error_and_lists_issues() -> None:
    err = DefinitionError(
        [DefinitionIssue("f", "t", "p", "m", 1), DefinitionIssue("g", None, "", "n")]
    )
    assert isinstance(err, TriggerError)
    assert str(err) == "2 problems in trigger definitions\n  f:1: t: p: m\n  g: n"
    assert len(err.issues) == 2


def test_format_path() -> None:
    assert format_path(("when", "all", 1, "where", "region")) == "when.all[1].where.region"
    assert format_path((0, "a")) == "[0].a"
    assert format_path(()) == ""


def test_locator_supplies_lines() -> None:
    seen: list[tuple[str | int, ...]] = []

    def locate(path: tuple[str | int, ...]) -> int:
        seen.append(path)
        return 40 + len(path)

    with pytest.raises(DefinitionError) as info:
        validate_definition(trig(when=leaf({"r": {"inn": 1}})), file="x.yaml", locate=locate)
    assert str(info.value.issues[0]) == "x.yaml:44: t1: when.where.r: unknown operator 'inn'"
    assert seen == [("when", "where", "r", "inn")]  # the line of the operator itself


# -- properties --------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), scalars, max_size=5))
def test_bare_scalars_become_eq_and_round_trip(where: dict[str, Any]) -> None:
    t = validate_definition(trig(when=leaf(where)))
    assert t.when["where"] == {k: {"eq": v} for k, v in where.items()}
    back = TriggerDef.from_canonical(json.loads(json.dumps(t.canonical())))
    assert back.digest() == t.digest()


@given(
    st.recursive(
        scalars | st.none(),
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
        ),
        max_leaves=20,
    )
)
def test_literal_params_keep_their_value(value: Any) -> None:
    if isinstance(value, dict) and list(value) == ["template"]:
        return
    if isinstance(value, str):
        return  # strings are templates or escaped literals, tested above
    t = validate_definition(trig(params={"p": value}))
    assert t.params["p"] == value
    assert TriggerDef.from_canonical(t.canonical()).params["p"] == value
    assert not (isinstance(value, float) and math.isnan(value))


def test_long_literal_mapping_key() -> None:
    found = one_problem(trig(params={"p": {"k" * 4097: 1}}))
    assert found == "f.yaml: t1: params.p: mapping key longer than 4096 characters"
