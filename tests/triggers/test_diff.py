"""Diffs of canonical definitions, as ``flagman apply`` prints them."""

from __future__ import annotations

import yaml

from triggers._diff import diff_definitions, render_definition
from triggers._load import load_text

TEXT = """
- id: rev.daily
  workflow: revenue_daily
  step: aggregate
  owner: finance
  when:
    all:
      - signal: table_ready
        as: orders
        where: {table: db.orders, region: {in: [us, eu]}}
      - signal: fx_override
  join: [dt]
  params:
    run_date: "{dt}"
    currency: USD
"""


def canonical(text: str = TEXT) -> dict[str, object]:
    (t,) = load_text(text)
    return t.canonical()


def test_identical_is_empty() -> None:
    assert diff_definitions(canonical(), canonical(), "rev.daily") == ""
    assert diff_definitions(None, None, "rev.daily") == ""


def test_changed_shows_only_changed_lines_with_context() -> None:
    new = canonical(
        TEXT.replace("currency: USD", "currency: EUR").replace("[us, eu]", "[us, eu, apac]")
    )
    out = diff_definitions(canonical(), new, "rev.daily")
    lines = out.splitlines()
    assert lines[0] == "--- a/rev.daily"
    assert lines[1] == "+++ b/rev.daily"
    assert "-  currency: USD" in lines
    assert "+  currency: EUR" in lines
    assert "+            - apac" in lines
    changed = [line for line in lines[2:] if line[:1] in "+-"]
    assert len(changed) == 3
    assert out.endswith("\n")


def test_new_and_removed() -> None:
    added = diff_definitions(None, canonical(), "rev.daily").splitlines()
    assert added[:2] == ["--- /dev/null", "+++ b/rev.daily"]
    assert added[3] == "+id: rev.daily"
    assert all(line.startswith("+") for line in added[3:])
    removed = diff_definitions(canonical(), None, "rev.daily").splitlines()
    assert removed[:2] == ["--- a/rev.daily", "+++ /dev/null"]
    assert all(line.startswith("-") for line in removed[3:])


def test_render_is_readable_sorted_yaml_that_reads_back() -> None:
    c = canonical()
    text = render_definition(c)
    assert text.splitlines()[:5] == [
        "id: rev.daily",
        "workflow: revenue_daily",
        "step: aggregate",
        "owner: finance",
        "description: null",
    ]
    assert yaml.safe_load(text) == c
    # nested keys are sorted, so key order in the source never shows up as a change
    reordered = canonical(
        TEXT.replace(
            "{table: db.orders, region: {in: [us, eu]}}",
            "{region: {in: [us, eu]}, table: db.orders}",
        )
    )
    assert render_definition(reordered) == text
