"""The public API of the triggers package is declared once and pinned here."""

import triggers


def test_exported_names_are_pinned() -> None:
    assert sorted(triggers.__all__) == sorted([
        "NO_JOIN", "CompiledLeaf", "CompiledTrigger", "DefinitionError", "DefinitionIssue",
        "Effects", "Firing", "Hit", "LeafClass", "LeafClassRegistry", "MatchState", "Matcher",
        "Plan", "Round", "TemplateError", "TriggerDef", "TriggerError", "TriggerIndex", "TupleState",
        "command_id", "compact_form", "compile_compact", "compile_trigger", "diff_definitions", "load_paths", "load_text",
        "parse_duration", "parse_template", "render_params", "tuple_key", "validate_definition",
    ])
    for name in triggers.__all__:
        assert hasattr(triggers, name)
