"""Param templates: parsing and rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals._model import SignalRef
from triggers._errors import TemplateError, TriggerError
from triggers._template import Ref, parse_template, render_params


@dataclass
class Sig:
    id: str
    params: dict[str, Any] = field(default_factory=dict)
    payload: Any = None


def test_parse_parts_and_refs() -> None:
    t = parse_template("run {dt} for {orders.payload.rows} rows")
    assert t.parts == ("run ", Ref("dt"), " for ", Ref("orders.payload.rows"), " rows")
    assert [r.text for r in t.refs] == ["dt", "orders.payload.rows"]
    assert t.refs[1].head == "orders" and t.refs[1].tail == "payload.rows"
    assert t.refs[0].tail is None
    assert str(t.refs[0]) == "{dt}"
    assert t.literal is None


def test_escapes() -> None:
    assert parse_template("{{x}}").literal == "{x}"
    assert parse_template("a}}b{{").literal == "a}b{"
    t = parse_template("{{{dt}}}")
    assert t.parts == ("{", Ref("dt"), "}")
    assert parse_template("").literal == ""
    assert parse_template("no refs").literal == "no refs"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{dt", "unbalanced '{' at position 0 (write '{{' for a literal brace)"),
        ("a{b{c}", "unbalanced '{' at position 1 (write '{{' for a literal brace)"),
        ("}", "unbalanced '}' at position 0 (write '}}' for a literal brace)"),
        ("{a}}", "unbalanced '}' at position 3 (write '}}' for a literal brace)"),
        ("{}", "invalid template reference '{}' (write '{{' and '}}' for literal braces)"),
        ("{1x}", "invalid template reference '{1x}' (write '{{' and '}}' for literal braces)"),
        (
            '{"a": 1}',
            "invalid template reference '{\"a\": 1}' (write '{{' and '}}' for literal braces)",
        ),
        ("x" * 4097, "template longer than 4096 characters"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(text)
    assert str(info.value) == message
    assert isinstance(info.value, TriggerError) and isinstance(info.value, ValueError)


def test_render_types() -> None:
    bindings = {
        "o": Sig(
            "orders-1",
            {
                "table": "db.orders",
                "n": 7,
                "f": 0.1,
                "big": 1e20,
                "ok": True,
                "no": False,
                "a.b": "dotted",
            },
            {
                "rows": 120331,
                "nested": {"b": [1, 2], "a": None},
                "items": [{"name": "x"}],
                "nul": None,
                "s": "é",
            },
        )
    }
    params = {
        "id": {"template": "{o.id}"},
        "table": {"template": "{o.table}"},
        "int": {"template": "{o.n}"},
        "float": {"template": "{o.f}"},
        "bigfloat": {"template": "{o.big}"},
        "true": {"template": "{o.ok}"},
        "false": {"template": "{o.no}"},
        "dotted": {"template": "{o.a.b}"},
        "rows": {"template": "{o.payload.rows}"},
        "obj": {"template": "{o.payload.nested}"},
        "list": {"template": "{o.payload.nested.b}"},
        "index": {"template": "{o.payload.items.0.name}"},
        "null": {"template": "[{o.payload.nul}]"},
        "unicode": {"template": "{o.payload.s}"},
        "whole": {"template": "{o.payload.nested.b.1}"},
        "dt": {"template": "{dt}-{{x}}"},
        "n": {"template": "{n}"},
        "b": {"template": "{b}"},
    }
    out = render_params(params, {"dt": "2026-11-25", "n": 7, "b": True}, bindings)
    assert out == {
        "id": "orders-1",
        "table": "db.orders",
        "int": "7",
        "float": "0.1",
        "bigfloat": "1e+20",
        "true": "true",
        "false": "false",
        "dotted": "dotted",
        "rows": "120331",
        "obj": '{"a":null,"b":[1,2]}',
        "list": "[1,2]",
        "index": "x",
        "null": "[]",
        "unicode": "é",
        "whole": "2",
        "dt": "2026-11-25-{x}",
        "n": "7",
        "b": "true",
    }


def test_missing_references_render_empty() -> None:
    params = {
        "unbound": {"template": "<{fx.id}>"},
        "param": {"template": "<{o.nope}>"},
        "path": {"template": "<{o.payload.a.b.c}>"},
        "index": {"template": "<{o.payload.l.5}>"},
        "notindex": {"template": "<{o.payload.l.x}>"},
        "scalar": {"template": "<{o.payload.l.0.x}>"},
        "nopayload": {"template": "<{p.payload.x}>"},
        "join": {"template": "<{dt}>"},
    }
    bindings = {"o": Sig("o1", {}, {"a": {"b": 3}, "l": [1]}), "p": Sig("p1")}
    out = render_params(params, None, bindings)
    assert out == {
        "unbound": "<>",
        "param": "<>",
        "path": "<>",
        "index": "<>",
        "notindex": "<>",
        "scalar": "<>",
        "nopayload": "<>",
        "join": "<>",
    }


def test_literals_returned_unchanged() -> None:
    nested = {"k": ["{dt}"]}
    params = {
        "s": "{dt}",
        "i": 1,
        "f": 1.5,
        "b": True,
        "n": None,
        "d": nested,
        "t": {"template": "{dt}"},
    }
    out = render_params(params, {"dt": "D"}, {})
    assert out == {"s": "{dt}", "i": 1, "f": 1.5, "b": True, "n": None, "d": nested, "t": "D"}
    assert out["d"] is nested


def test_join_key_with_dots_wins_over_alias() -> None:
    out = render_params(
        {"p": {"template": "{a.b}"}}, {"a.b": "join"}, {"a": Sig("x", {"b": "param"})}
    )
    assert out == {"p": "join"}


def test_renders_with_signal_ref() -> None:
    ref = SignalRef(
        seq=1,
        name="table_ready",
        id="orders-2026-11-25-r1",
        topic="flagman.signals",
        partition=0,
        offset=41,
        time="2026-11-25T06:02:11Z",
        params={"table": "db.orders", "dt": "2026-11-25"},
        payload={"rows": 120331},
    )
    out = render_params(
        {
            "run_date": {"template": "{dt}"},
            "orders_rows": {"template": "{orders.payload.rows}"},
            "src": {"template": "{orders.id}"},
        },
        {"dt": "2026-11-25"},
        {"orders": ref},
    )
    assert out == {"run_date": "2026-11-25", "orders_rows": "120331", "src": "orders-2026-11-25-r1"}


@given(st.text(max_size=40))
def test_parse_never_raises_other_errors(text: str) -> None:
    try:
        t = parse_template(text)
    except TemplateError:
        return
    assert t.text == text
    # rendering with nothing bound never fails and yields a string
    assert isinstance(t.render(None, {}), str)


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=30))
def test_escaped_text_round_trips(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert parse_template(escaped).literal == text
    braces = "{" + text + "}"
    assert parse_template(braces.replace("{", "{{").replace("}", "}}")).literal == braces
