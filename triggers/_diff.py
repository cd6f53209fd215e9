"""Human-readable diffs of canonical trigger definitions, for ``flagman apply``."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import yaml

_TOP_ORDER = (
    "id",
    "workflow",
    "step",
    "owner",
    "description",
    "when",
    "join",
    "on_update",
    "params",
    "lookback_s",
)


class _Dumper(yaml.SafeDumper):
    """Safe YAML that indents list items under their key, for easier reading."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render_definition(definition: Mapping[str, Any]) -> str:
    """A canonical definition as block YAML: top-level keys in definition order, every
    nested mapping sorted, so the same definition always renders the same text."""
    ordered = {k: definition[k] for k in _TOP_ORDER if k in definition}
    ordered.update({k: v for k, v in sorted(definition.items()) if k not in ordered})
    parts = []
    for key, value in ordered.items():
        # One top-level key at a time keeps their order while nested keys are sorted.
        parts.append(
            yaml.dump(
                {key: value},
                Dumper=_Dumper,
                sort_keys=True,
                default_flow_style=False,
                allow_unicode=True,
                width=1_000_000,
                indent=2,
            )
        )
    return "".join(parts)


def diff_definitions(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, trigger_id: str
) -> str:
    """Unified diff between two canonical definitions of ``trigger_id``.

    ``old`` is ``None`` for a new trigger and ``new`` is ``None`` for a removed one.
    Returns ``""`` when nothing changed (or both are ``None``); otherwise the text ends
    with a newline.
    """
    before = render_definition(old).splitlines(keepends=True) if old is not None else []
    after = render_definition(new).splitlines(keepends=True) if new is not None else []
    if before == after:
        return ""
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=f"a/{trigger_id}" if old is not None else "/dev/null",
        tofile=f"b/{trigger_id}" if new is not None else "/dev/null",
        n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
