"""Trigger definitions, the condition language and the matcher (pure: no I/O)."""

from ._compile import (
    CompiledLeaf,
    CompiledTrigger,
    LeafClass,
    LeafClassRegistry,
    command_id,
    compact_form,
    compile_compact,
    compile_trigger,
    tuple_key,
)
from ._diff import diff_definitions
from ._duration import parse_duration
from ._errors import DefinitionError, DefinitionIssue, TemplateError, TriggerError
from ._index import TriggerIndex
from ._load import load_paths, load_text
from ._matcher import NO_JOIN, Effects, Firing, Hit, Matcher, MatchState, Plan, Round, TupleState
from ._spec import TriggerDef, validate_definition
from ._template import parse_template, render_params

__all__ = [
    "NO_JOIN",
    "CompiledLeaf",
    "CompiledTrigger",
    "DefinitionError",
    "DefinitionIssue",
    "Effects",
    "Firing",
    "Hit",
    "LeafClass",
    "LeafClassRegistry",
    "MatchState",
    "Matcher",
    "Plan",
    "Round",
    "TemplateError",
    "TriggerDef",
    "TriggerError",
    "TriggerIndex",
    "TupleState",
    "command_id",
    "compact_form",
    "compile_compact",
    "compile_trigger",
    "diff_definitions",
    "load_paths",
    "load_text",
    "parse_duration",
    "parse_template",
    "render_params",
    "tuple_key",
    "validate_definition",
]
