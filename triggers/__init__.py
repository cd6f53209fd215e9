"""Trigger definitions, the condition language and the matcher (pure: no I/O)."""

from ._compile import (
    CompiledLeaf,
    CompiledTrigger,
    LeafClass,
    LeafClassRegistry,
    command_id,
    compile_trigger,
    tuple_key,
)
from ._index import TriggerIndex
from ._matcher import NO_JOIN, Effects, Firing, Hit, Matcher, MatchState, Plan, Round

__all__ = [
    "NO_JOIN",
    "CompiledLeaf",
    "CompiledTrigger",
    "Effects",
    "Firing",
    "Hit",
    "LeafClass",
    "LeafClassRegistry",
    "MatchState",
    "Matcher",
    "Plan",
    "Round",
    "TriggerIndex",
    "command_id",
    "compile_trigger",
    "tuple_key",
]
