"""Param templates: ``"{dt}"``, ``"{orders.payload.rows}"``, rendered into command params.

A template is text with references in braces; ``{{`` and ``}}`` stand for literal
braces. A reference is a join key (``{dt}``) or starts with a trigger alias:
``{alias.id}``, ``{alias.payload}``, ``{alias.payload.a.b}`` (list items by index:
``{alias.payload.items.0}``) or ``{alias.PARAM}``. Whether each reference names
something the trigger declares is checked with the definition (``_spec``); here
only the syntax is checked, and rendering never fails: what is missing at render
time renders as the empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from ._errors import TemplateError

MAX_TEMPLATE_CHARS = 4096
MAX_REF_CHARS = 256
_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
"""What may sit between braces: a join key or ``alias.rest``; meaning is checked later."""


class Binding(Protocol):
    """What a template reads from the signal bound to an alias (``signals.SignalRef`` fits)."""

    @property
    def id(self) -> str: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    @property
    def payload(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Ref:
    """One ``{...}`` reference: its text, split at the first dot into ``head`` and ``tail``."""

    text: str

    @property
    def head(self) -> str:
        """The part before the first dot: a join key's start or an alias."""
        return self.text.split(".", 1)[0]

    @property
    def tail(self) -> str | None:
        """The part after the first dot (``id``, ``payload...`` or a param), if any."""
        parts = self.text.split(".", 1)
        return parts[1] if len(parts) == 2 else None

    def __str__(self) -> str:
        return "{" + self.text + "}"


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: ``parts`` alternate literal text and references."""

    text: str
    parts: tuple[str | Ref, ...]

    @property
    def refs(self) -> tuple[Ref, ...]:
        """The references, in order of appearance (repeats kept)."""
        return tuple(p for p in self.parts if isinstance(p, Ref))

    @property
    def literal(self) -> str | None:
        """The text with escapes resolved, when the template holds no reference."""
        if self.refs:
            return None
        return "".join(p for p in self.parts if isinstance(p, str))

    def render(self, join: Mapping[str, Any] | None, bindings: Mapping[str, Binding]) -> str:
        """Render to a string; a reference that resolves to nothing renders as ``""``."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(_text_of(_resolve(part, join, bindings)))
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse ``text``; raises ``TemplateError`` on an unbalanced brace or a bad reference."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template longer than {MAX_TEMPLATE_CHARS} characters")
    parts: list[str | Ref] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "{":
            if text.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateError(
                    f"unbalanced '{{' at position {i} (write '{{{{' for a literal brace)"
                )
            inner = text[i + 1 : end]
            if "{" in inner:
                raise TemplateError(
                    f"unbalanced '{{' at position {i} (write '{{{{' for a literal brace)"
                )
            if len(inner) > MAX_REF_CHARS or not _REF.fullmatch(inner):
                raise TemplateError(
                    f"invalid template reference {_show('{' + inner + '}')}"
                    " (write '{{' and '}}' for literal braces)"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Ref(inner))
            i = end + 1
        elif ch == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(
                f"unbalanced '}}' at position {i} (write '}}}}' for a literal brace)"
            )
        else:
            # Copy the run of plain characters in one step.
            j = i + 1
            while j < n and text[j] not in "{}":
                j += 1
            literal.append(text[i:j])
            i = j
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


@lru_cache(maxsize=4096)
def _cached(text: str) -> Template:
    return parse_template(text)


def render_params(
    params: Mapping[str, Any],
    join: Mapping[str, Any] | None,
    bindings: Mapping[str, Binding],
) -> dict[str, Any]:
    """Render canonical command params.

    A value ``{"template": text}`` becomes the rendered string; any other value is a
    literal and is returned as it is (not copied). ``join`` maps join keys to the
    tuple's values (``None`` for a trigger without join); ``bindings`` maps aliases to
    the signals bound to them. Aliases without a signal (a leaf in an unsatisfied
    ``any`` branch), absent params and absent payload paths render as ``""``.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        if is_template_value(value):
            out[name] = _cached(value["template"]).render(join, bindings)
        else:
            out[name] = value
    return out


def is_template_value(value: Any) -> bool:
    """True for the canonical form of a template param, ``{"template": "..."}``."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("template"), str)


_MISSING = object()


def _resolve(ref: Ref, join: Mapping[str, Any] | None, bindings: Mapping[str, Binding]) -> Any:
    # A whole-text join key wins; the definition check keeps it from shadowing an alias.
    if join is not None and ref.text in join:
        return join[ref.text]
    tail = ref.tail
    binding = bindings.get(ref.head)
    if binding is None or tail is None:
        return _MISSING
    if tail == "id":
        return binding.id
    if tail == "payload" or tail.startswith("payload."):
        node = binding.payload
        for key in tail.split(".")[1:]:
            node = _step(node, key)
            if node is _MISSING:
                break
        return node
    params = binding.params
    return params.get(tail, _MISSING) if isinstance(params, Mapping) else _MISSING


def _step(node: Any, key: str) -> Any:
    if isinstance(node, Mapping):
        return node.get(key, _MISSING)
    if isinstance(node, list) and key.isascii() and key.isdigit():
        index = int(key)
        return node[index] if index < len(node) else _MISSING
    return _MISSING


def _text_of(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")
