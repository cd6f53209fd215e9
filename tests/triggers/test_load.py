"""Loading trigger files: YAML handling, line numbers, whole-set checks, hostile input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triggers._errors import DefinitionError
from triggers._load import MAX_FILE_BYTES, MAX_ISSUES, load_paths, load_text
from triggers._spec import TriggerDef

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SPEC_EXAMPLE = """\
- id: revenue.daily.aggregate        # unique and stable; [A-Za-z0-9_.:-]{1,200}
  workflow: revenue_daily            # the workflow to start
  step: aggregate                    # optional: gate one step instead of starting the workflow
  owner: finance-data                # team that owns it
  when:
    all:
      - signal: table_ready
        as: orders                   # optional alias, for templates and lineage
        where: {table: db.orders}
      - signal: table_ready
        where:
          table: db.refunds
          region: {in: [us, eu]}
      - any:
          - signal: table_ready
            where: {table: db.fx_rates}
          - signal: fx_override
  join: [dt]                         # correlate: all parts must carry the same dt
  on_update: ignore                  # or refire (see below)
  params:                            # params of the command; templates over join keys and aliases
    run_date: "{dt}"
    orders_rows: "{orders.payload.rows}"
"""

MINI = "- {id: %s, workflow: w, when: {signal: s}}\n"


def problems(text: str, file: str = "orders.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_text(text, file)
    return [str(i) for i in info.value.issues]


def one_problem(text: str, file: str = "orders.yaml") -> str:
    found = problems(text, file)
    assert len(found) == 1, found
    return found[0]


def where_value(yaml_value: str) -> Any:
    (t,) = load_text(f"id: t\nworkflow: w\nwhen: {{signal: s, where: {{p: {yaml_value}}}}}\n")
    return t.when["where"]["p"]["eq"]


def param_value(yaml_value: str) -> Any:
    (t,) = load_text(f"id: t\nworkflow: w\nwhen: {{signal: s}}\nparams: {{p: {yaml_value}}}\n")
    return t.params["p"]


# -- the happy path ----------------------------------------------------------------


def test_spec_example_loads() -> None:
    (t,) = load_text(SPEC_EXAMPLE)
    assert t.id == "revenue.daily.aggregate"
    assert t.canonical()["when"]["all"][1]["where"] == {
        "table": {"eq": "db.refunds"},
        "region": {"in": ["us", "eu"]},
    }
    assert t.params == {
        "run_date": {"template": "{dt}"},
        "orders_rows": {"template": "{orders.payload.rows}"},
    }


def test_spec_example_error_message_shape() -> None:
    text = SPEC_EXAMPLE.replace("region: {in: [us, eu]}", "region: {inn: [us, eu]}")
    assert (
        one_problem(text)
        == "orders.yaml:13: revenue.daily.aggregate: when.all[1].where.region: unknown operator 'inn'"
    )


def test_one_mapping_file_and_empty_files() -> None:
    (t,) = load_text("id: a\nworkflow: w\nwhen: {signal: s}\n")
    assert t.id == "a"
    assert load_text("") == []
    assert load_text("# only a comment\n") == []
    assert load_text("---\n") == []
    assert load_text("[]") == []


def test_several_documents() -> None:
    text = (
        "id: a\nworkflow: w\nwhen: {signal: s}\n---\n- id: b\n  workflow: w\n  when: {signal: s}\n"
    )
    assert [t.id for t in load_text(text)] == ["a", "b"]


def test_examples_warehouse_loads() -> None:
    triggers = load_paths([EXAMPLES / "warehouse.yaml"])
    ids = [t.id for t in triggers]
    assert len(ids) == len(set(ids)) >= 6
    by_id = {t.id: t for t in triggers}
    assert {t.workflow for t in triggers} >= {
        "revenue_daily",
        "user_growth",
        "refunds_audit",
        "fx_sanity",
    }
    assert any(t.on_update == "refire" for t in triggers)
    assert any(not t.join for t in triggers)
    assert any("at_least" in t.when for t in triggers)
    assert any("any" in t.when for t in triggers)
    assert all(t.owner for t in triggers)
    assert by_id["revenue.daily.aggregate"].params["run_date"] == {"template": "{dt}"}
    assert "date" in str(by_id["fx.sanity.check"].when)  # join_as
    for t in triggers:
        assert TriggerDef.from_canonical(t.canonical()) == t


# -- YAML reading ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_value", "value"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("2026-11-25", "2026-11-25"),
        ("2026-11-25T06:02:11Z", "2026-11-25T06:02:11Z"),
        ("1:30", "1:30"),
        ("'7'", "7"),
        ('"true"', "true"),
        ("!!str 12", "12"),
        ("! 12", "12"),
        ("true", True),
        ("False", False),
        ("12", 12),
        ("-3", -3),
        ("007", 7),
        ("0x1F", 31),
        ("0o17", 15),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("!!int '12'", 12),
        ("!!float 2", 2.0),
        ("!!bool 'true'", True),
        ("1_000", "1_000"),
        ("db.orders", "db.orders"),
    ],
)
def test_core_schema_scalars(yaml_value: str, value: Any) -> None:
    got = where_value(yaml_value)
    assert got == value and type(got) is type(value)


def test_null_and_nested_params_keep_types() -> None:
    assert param_value("~") is None
    assert param_value("null") is None
    assert param_value("[1, two, {a: yes}]") == [1, "two", {"a": "yes"}]


@pytest.mark.parametrize(
    ("yaml_value", "message"),
    [
        (".nan", "orders.yaml:1: t: when.where.p: numbers must be finite (no .nan or .inf)"),
        ("-.inf", "orders.yaml:1: t: when.where.p: numbers must be finite (no .nan or .inf)"),
        (
            "9007199254740992",
            "orders.yaml:1: t: when.where.p: integer out of range (beyond ±(2^53-1))",
        ),
        ("1" * 70, "orders.yaml:1: integer too long: '" + "1" * 60 + "...'"),
        ("!!binary aGVsbG8=", "orders.yaml:1: unsupported YAML tag 'tag:yaml.org,2002:binary'"),
        ("!custom x", "orders.yaml:1: unsupported YAML tag '!custom'"),
        ("!!set {a, b}", "orders.yaml:1: unsupported YAML tag 'tag:yaml.org,2002:set'"),
        ("!!int abc", "orders.yaml:1: cannot read 'abc' as !!int"),
        (
            "!!python/object:os.system x",
            "orders.yaml:1: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
    ],
)
def test_scalar_problems(yaml_value: str, message: str) -> None:
    assert (
        one_problem(f"{{id: t, workflow: w, when: {{signal: s, where: {{p: {yaml_value}}}}}}}")
        == message
    )


def test_bad_yaml_syntax_is_one_issue_with_line() -> None:
    found = one_problem("- id: a\n  workflow: w\n  when: {signal: s\n- id: b\n")
    assert found.startswith("orders.yaml:4: invalid YAML: ")
    found = one_problem("- id: a\n   workflow: [\n")
    assert found.startswith("orders.yaml:") and "invalid YAML" in found
    assert one_problem("a: b: c\n").startswith("orders.yaml:1: invalid YAML: ")


def test_duplicate_mapping_keys_are_refused() -> None:
    text = "- id: a\n  workflow: w\n  when: {signal: s}\n  workflow: v\n"
    assert one_problem(text) == "orders.yaml:4: duplicate key 'workflow'"


def test_complex_keys_are_refused() -> None:
    assert (
        one_problem("? [a, b]\n: 1\n")
        == "orders.yaml:1: mapping keys must be plain strings, not lists or mappings"
    )


def test_keys_are_always_text() -> None:
    # `on: x` would be the key True in YAML 1.1; here it is the text 'on'
    found = one_problem("{id: t, workflow: w, when: {signal: s}, on: refire}")
    assert found == "orders.yaml:1: t: unknown key 'on' (did you mean 'join'?)"


def test_non_mapping_documents_and_items() -> None:
    assert (
        one_problem("just text")
        == "orders.yaml:1: expected a list of triggers or one trigger mapping, got string"
    )
    found = problems("- 1\n- [a]\n" + MINI % "ok")
    assert found == [
        "orders.yaml:1: a trigger must be a mapping, got integer",
        "orders.yaml:2: a trigger must be a mapping, got list",
    ]


def test_lines_point_at_the_offending_key() -> None:
    text = """\
- id: a
  workflow: w
  when: {signal: s}
- id: b
  workflow: w
  stepp: x
  when:
    all:
      - signal: s
        wher: {x: 1}
      - signal: s
        where:
          x:
            gte: null
  params:
    p: "{nope}"
  lookback: 7y
- workflow: w
  when: {signal: s}
"""
    assert problems(text) == [
        "orders.yaml:6: b: unknown key 'stepp' (did you mean 'step'?)",
        "orders.yaml:10: b: when.all[0]: unknown key 'wher' (did you mean 'where'?)",
        "orders.yaml:14: b: when.all[1].where.x.gte: expected a string or a number, got null (use {exists: false} for a missing param)",
        "orders.yaml:16: b: params.p: unknown template reference '{nope}': not a join key or alias of this trigger",
        "orders.yaml:17: b: lookback: invalid duration '7y': expected e.g. 7d, 12h, 30m, 45s, 2w or seconds",
        "orders.yaml:18: missing required key 'id'",
    ]


def test_utf8_bom_and_unicode() -> None:
    (t,) = load_text("\ufeffid: a\nworkflow: w\nowner: équipe-données\nwhen: {signal: s}\n")
    assert t.owner == "équipe-données"


def test_lone_surrogate_text() -> None:
    assert one_problem("id: \ud800\n") == "orders.yaml: not valid UTF-8 text (lone surrogate)"


# -- sets of files -----------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_directories_are_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", MINI % "b")
    write(tmp_path / "a.yml", MINI % "a")
    write(tmp_path / "sub" / "c.yaml", MINI % "c")
    write(tmp_path / "a_sub" / "z.yaml", MINI % "z")
    write(tmp_path / "notes.txt", "not yaml at all: [")
    write(tmp_path / "README.md", "# hi")
    ids = [t.id for t in load_paths([tmp_path])]
    assert ids == ["a", "z", "b", "c"]  # a.yml < a_sub/z.yaml < b.yaml < sub/c.yaml
    assert [t.id for t in load_paths([str(tmp_path / "b.yaml"), tmp_path / "a.yml"])] == ["b", "a"]


def test_same_file_twice_is_read_once(tmp_path: Path) -> None:
    f = write(tmp_path / "a.yaml", MINI % "a")
    assert [t.id for t in load_paths([f, tmp_path, str(f)])] == ["a"]


def test_all_issues_across_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", MINI % "one" + MINI % "two")
    write(
        tmp_path / "b.yaml", "- {id: three, workflow: w, when: {signal: s, where: {r: {inn: 1}}}}\n"
    )
    write(tmp_path / "c.yaml", MINI % "two" + "- [\n")
    with pytest.raises(DefinitionError) as info:
        load_paths([tmp_path, tmp_path / "missing.yaml"])
    a, b, c = (str(tmp_path / n) for n in ("a.yaml", "b.yaml", "c.yaml"))
    messages = [str(i) for i in info.value.issues]
    assert messages[0] == f"{tmp_path / 'missing.yaml'}: no such file or directory"
    assert messages[1] == f"{b}:1: three: when.where.r: unknown operator 'inn'"
    assert messages[2].startswith(f"{c}:3: invalid YAML: ")
    assert messages[3] == f"{c}:1: two: id: duplicate trigger id (first defined at {a}:2)"
    assert len(messages) == 4


def test_duplicate_ids_within_one_text() -> None:
    assert problems(MINI % "a" + MINI % "b" + MINI % "a") == [
        "orders.yaml:3: a: id: duplicate trigger id (first defined at orders.yaml:1)"
    ]


def test_file_problems(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"id: \xff\xfe\n")
    with pytest.raises(DefinitionError) as info:
        load_paths([big, bad])
    assert [str(i) for i in info.value.issues] == [
        f"{big}: file larger than {MAX_FILE_BYTES} bytes",
        f"{bad}: not valid UTF-8 (byte offset 4)",
    ]
    assert (
        one_problem("#" * (MAX_FILE_BYTES + 1))
        == f"orders.yaml: file larger than {MAX_FILE_BYTES} bytes"
    )


# -- hostile input -----------------------------------------------------------------


def test_billion_laughs_is_refused_fast() -> None:
    lol = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lol.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    found = one_problem("\n".join(lol) + "\n")
    assert time.monotonic() - start < 1
    assert found == "orders.yaml:1: YAML anchors are not allowed (&a); write the value out"


def test_aliases_and_merge_keys_are_refused() -> None:
    assert one_problem("*x\n").startswith("orders.yaml:1: ")
    text = "- &base {id: a, workflow: w, when: {signal: s}}\n- <<: *base\n  id: b\n"
    assert (
        one_problem(text)
        == "orders.yaml:1: YAML anchors are not allowed (&base); write the value out"
    )
    assert (
        one_problem("- id: a\n  when: &w {signal: s}\n")
        == "orders.yaml:2: YAML anchors are not allowed (&w); write the value out"
    )


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        "{a: " * 100_000,
        "- " * 100_000 + "x",
        "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 2000)),
        "- id: t\n  params:\n    p: " + "[" * 70 + "]" * 70 + "\n",
    ],
)
def test_deep_nesting_is_refused_fast(text: str) -> None:
    start = time.monotonic()
    found = one_problem(text)
    assert time.monotonic() - start < 2
    assert "nest" in found  # "YAML nested deeper than 64 levels", or the parser's own limit


def test_depth_within_limits_loads() -> None:
    value = "[" * 30 + "1" + "]" * 30
    assert isinstance(param_value(value), list)


def test_huge_file_of_tiny_triggers_finishes_quickly() -> None:
    lines: list[str] = []
    size = 0
    while size < 4 * 1024 * 1024:
        line = MINI % f"t{len(lines)}"
        lines.append(line)
        size += len(line)
    start = time.monotonic()
    triggers = load_text("".join(lines))
    assert len(triggers) == len(lines)
    assert time.monotonic() - start < 30


def test_many_issues_are_capped() -> None:
    text = "".join(
        f"- {{id: t{i}, workflow: 'bad wf', when: {{signal: s}}}}\n" for i in range(50_000)
    )
    start = time.monotonic()
    with pytest.raises(DefinitionError) as info:
        load_text(text)
    assert time.monotonic() - start < 30
    issues = info.value.issues
    assert len(issues) == MAX_ISSUES + 1
    assert (
        str(issues[-2])
        == f"<string>:{MAX_ISSUES}: t{MAX_ISSUES - 1}: workflow: expected 1-200 characters of A-Z a-z 0-9 _ . : -, got 'bad wf'"
    )
    assert (
        str(issues[-1])
        == f"<string>: stopped after {MAX_ISSUES} problems; fix these and run again for the rest"
    )


def test_long_unknown_key_is_shown_cut_short() -> None:
    found = one_problem("id: t\nworkflow: w\nwhen: {signal: s}\n" + "k" * 1000 + ": 1\n")
    assert found == "orders.yaml:4: t: unknown key '" + "k" * 60 + "...'"


# -- properties --------------------------------------------------------------------

YAMLISH = st.lists(
    st.sampled_from(
        [
            *"abst: -[]{},&*!|>'\"#\n\t?%@`\\019.~",
            "id",
            "when",
            "signal",
            "all",
            "\u2028",
            "\x00",
            "\ufeff",
        ]
        + [
            "id: a\n",
            "workflow: w\n",
            "when: {signal: s}\n",
            "- ",
            "  ",
            "!!int ",
            "!!str ",
            "<<: ",
            "where:",
        ]
    ),
    max_size=80,
).map("".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), YAMLISH))
def test_arbitrary_text_only_ever_raises_definition_error(text: str) -> None:
    try:
        result = load_text(text)
    except DefinitionError as exc:
        assert exc.issues
        for issue in exc.issues:
            str(issue)
        return
    assert all(isinstance(t, TriggerDef) for t in result)


@settings(max_examples=100)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "id": st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
                "workflow": st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                "when": st.just({"signal": "s"}),
            }
        ),
        max_size=5,
        unique_by=lambda d: str(d["id"]),
    )
)
def test_generated_files_load(triggers: list[dict[str, Any]]) -> None:
    import json

    # JSON is YAML: every JSON document of valid triggers loads to the same ids
    loaded = load_text(json.dumps(triggers))
    assert [t.id for t in loaded] == [d["id"] for d in triggers]


def _assert_plain_json(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        assert type(item) in (dict, list, str, int, float, bool, type(None)), type(item)
        if type(item) is dict:
            assert all(type(k) is str for k in item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)


def test_loaded_definitions_hold_only_plain_json_types() -> None:
    for t in load_paths([EXAMPLES]):
        _assert_plain_json(t.when)
        _assert_plain_json(t.params)
        _assert_plain_json(t.canonical())


def test_a_single_path_is_not_taken_for_a_sequence() -> None:
    assert [t.id for t in load_paths(str(EXAMPLES / "warehouse.yaml"))][:1] == [
        "revenue.daily.aggregate"
    ]
