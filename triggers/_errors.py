"""Errors of the ``triggers`` package: one base, and the definition problems it reports."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


class TriggerError(Exception):
    """Base of every error raised by the ``triggers`` package."""


@dataclass(frozen=True, slots=True)
class DefinitionIssue:
    """One problem in a trigger definition, located as precisely as the input allows.

    ``path`` is relative to the trigger (``when.all[1].where.region``; empty for the
    trigger as a whole), ``line`` is 1-based. ``str()`` gives the one-line form
    ``orders.yaml:12: revenue.daily.aggregate: when.all[1].where.region: unknown
    operator 'inn'``, leaving out the parts that are unknown.
    """

    file: str
    trigger_id: str | None
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [where]
        if self.trigger_id is not None:
            parts.append(self.trigger_id)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return _one_line(": ".join(parts))


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _one_line(text: str) -> str:
    """Escape control characters (user input such as keys is echoed): one issue, one line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


class DefinitionError(TriggerError):
    """Trigger definitions were rejected; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[DefinitionIssue]) -> None:
        self.issues: list[DefinitionIssue] = list(issues)
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in trigger definitions"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in self.issues)]))


class TemplateError(TriggerError, ValueError):
    """A param template is malformed (an unbalanced brace, an empty or bad reference)."""


class DurationError(TriggerError, ValueError):
    """A duration (``lookback``) is not one of ``45s``, ``30m``, ``12h``, ``7d``, ``2w``, ``N``."""
