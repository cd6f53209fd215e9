"""Trigger definitions: validation of one trigger and its canonical form.

``validate_definition`` turns one parsed trigger (a mapping, as YAML or JSON gives
it) into a ``TriggerDef``, or raises ``DefinitionError`` listing every problem with
its path (``when.all[1].where.region``) and, when a locator is given, its line.
``TriggerDef.canonical()`` is the plain-JSON form the matcher compiles and the store
keeps; ``TriggerDef.from_canonical`` reads it back. The validator is hand-written
rather than a pydantic model so that every message names the user's own path and
wording (``unknown operator 'inn'``), and so that hostile input is bounded: depth
is checked before descending, and every string and list has a limit.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from signals import canonical_json

from ._duration import MAX_DURATION_S, parse_duration
from ._errors import DefinitionError, DefinitionIssue, DurationError, TemplateError
from ._template import Ref, Template, parse_template

Path = tuple[str | int, ...]
Locator = Callable[[Path], int | None]
"""Maps a path inside one trigger to the 1-based line it starts on, if known."""

NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
"""Trigger ids, workflows, steps and signal names."""
PARAM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
"""Param names: where keys, join keys, join_as targets, command params."""
ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

DEFAULT_LOOKBACK_S = 7 * 86400
MAX_CONDITION_DEPTH = 32
MAX_LEAVES = 256
MAX_STRING_CHARS = 4096
MAX_OWNER_CHARS = 200
MAX_LIST_ITEMS = 1024
MAX_JOIN_KEYS = 32
MAX_PARAMS = 256
MAX_LITERAL_DEPTH = 32
MAX_SAFE_INT = 2**53 - 1
"""Larger integers have no exact RFC 8785 (JCS) form, so digests could not cover them."""

COMPARISON_OPS = ("lt", "lte", "gt", "gte")
OPERATORS = ("eq", "ne", *COMPARISON_OPS, "in", "not_in", "prefix", "exists")
COMBINATORS = ("all", "any", "at_least")
LEAF_KEYS = ("signal", "where", "as", "join_as")
_INPUT_KEYS = (
    "id",
    "workflow",
    "step",
    "owner",
    "description",
    "when",
    "join",
    "on_update",
    "params",
    "lookback",
)
_CANONICAL_KEYS = (*_INPUT_KEYS[:-1], "lookback_s")
ON_UPDATE = ("ignore", "refire")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class TriggerDef:
    """One valid trigger. ``when`` and ``params`` are in canonical (plain JSON) form."""

    id: str
    workflow: str
    when: dict[str, Any]
    step: str | None = None
    owner: str | None = None
    description: str | None = None
    join: tuple[str, ...] = ()
    on_update: Literal["ignore", "refire"] = "ignore"
    params: dict[str, Any] = field(default_factory=dict)
    lookback_s: int = DEFAULT_LOOKBACK_S

    def canonical(self, *, copy_nested: bool = True) -> dict[str, Any]:
        """The canonical form: a fresh plain dict, safe to serialise, store or mutate.

        ``copy_nested=False`` shares ``when`` and ``params`` with this object: for
        read-only uses (digests, storing) of many triggers, where deep copies cost.
        """
        if not copy_nested:
            return {
                "id": self.id, "workflow": self.workflow, "step": self.step,
                "owner": self.owner, "description": self.description, "when": self.when,
                "join": list(self.join), "on_update": self.on_update, "params": self.params,
                "lookback_s": self.lookback_s,
            }
        return {
            "id": self.id,
            "workflow": self.workflow,
            "step": self.step,
            "owner": self.owner,
            "description": self.description,
            "when": copy.deepcopy(self.when),
            "join": list(self.join),
            "on_update": self.on_update,
            "params": copy.deepcopy(self.params),
            "lookback_s": self.lookback_s,
        }

    def digest(self) -> str:
        """SHA-256 hex of the RFC 8785 canonical JSON of ``canonical()``."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        return hashlib.sha256(canonical_json(self.canonical(copy_nested=False))).hexdigest()

    def __hash__(self) -> int:
        return hash(self._digest)

    @classmethod
    def from_canonical(cls, data: Mapping[str, Any]) -> TriggerDef:
        """Rebuild from a stored ``canonical()`` dict; raises ``DefinitionError`` if it is not one."""
        return _Checker("<canonical>", None, canonical=True).trigger(data)


def validate_definition(
    obj: Any, *, file: str = "<string>", locate: Locator | None = None
) -> TriggerDef:
    """Validate one trigger as written in a definition file (``lookback``, template strings).

    Raises ``DefinitionError`` holding every problem found in this trigger. ``locate``
    maps a path inside the trigger to a line number for the messages.
    """
    return _Checker(file, locate, canonical=False).trigger(obj)


def format_path(path: Iterable[str | int]) -> str:
    """``("when", "all", 1, "where", "region")`` → ``when.all[1].where.region``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else seg
    return out


def kind_of(value: Any) -> str:
    """The YAML/JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def show(value: Any, limit: int = 60) -> str:
    """``repr`` of a name or value for a message, cut short so hostile input stays readable."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


@dataclass
class _Leaves:
    count: int = 0
    aliases: dict[str, Path] = field(default_factory=dict)
    over_limit: bool = False


class _Checker:
    """Validates one trigger, collecting every issue rather than stopping at the first."""

    def __init__(self, file: str, locate: Locator | None, *, canonical: bool) -> None:
        self.file = file
        self.locate = locate
        self.canonical = canonical
        self.trigger_id: str | None = None
        self.issues: list[DefinitionIssue] = []
        self.join_keys: tuple[str, ...] = ()

    def issue(self, path: Path, message: str, at: Path | None = None) -> None:
        line = self.locate(path if at is None else at) if self.locate is not None else None
        self.issues.append(
            DefinitionIssue(self.file, self.trigger_id, format_path(path), message, line)
        )

    # -- the trigger -----------------------------------------------------------------

    def trigger(self, obj: Any) -> TriggerDef:
        if not isinstance(obj, Mapping):
            self.issue((), f"a trigger must be a mapping, got {kind_of(obj)}")
            raise DefinitionError(self.issues)
        raw_id = obj.get("id")
        if isinstance(raw_id, str) and NAME_RE.fullmatch(raw_id):
            self.trigger_id = raw_id
        allowed = _CANONICAL_KEYS if self.canonical else _INPUT_KEYS
        self.unknown_keys(obj, (), allowed)
        for key in ("id", "workflow", "when"):
            if key not in obj:
                self.issue((), f"missing required key '{key}'")

        trigger_id = self.name(obj, "id", required=True)
        workflow = self.name(obj, "workflow", required=True)
        step = self.name(obj, "step", required=False)
        owner = self.text(obj, "owner", MAX_OWNER_CHARS)
        description = self.text(obj, "description", MAX_STRING_CHARS)
        self.join_keys = self.join(obj.get("join"))
        leaves = _Leaves()
        when = self.node(obj["when"], ("when",), 1, leaves) if "when" in obj else None
        self.check_alias_collisions(leaves)
        on_update = self.on_update(obj.get("on_update"))
        params = self.params(obj.get("params"), set(leaves.aliases))
        lookback_s = self.lookback(obj)

        if self.issues:
            raise DefinitionError(self.issues)
        assert trigger_id is not None and workflow is not None and when is not None
        return TriggerDef(
            id=trigger_id,
            workflow=workflow,
            step=step,
            owner=owner,
            description=description,
            when=when,
            join=self.join_keys,
            on_update=on_update,
            params=params,
            lookback_s=lookback_s,
        )

    def unknown_keys(self, obj: Mapping[Any, Any], path: Path, allowed: Iterable[str]) -> bool:
        allowed = tuple(allowed)
        unknown = [k for k in obj if k not in allowed]
        if not unknown:
            return False
        if len(unknown) == 1:
            key = unknown[0]
            hint = ""
            if isinstance(key, str):
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
            message = f"unknown key {show(key)}{hint}"
        else:
            shown = ", ".join(show(k) for k in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            message = f"unknown keys {shown}{more}"
        first = unknown[0]
        self.issue(path, message, at=(*path, first) if isinstance(first, str) else path)
        return True

    def name(self, obj: Mapping[str, Any], key: str, *, required: bool) -> str | None:
        value = obj.get(key)
        if value is None:
            if required and key in obj:
                self.issue((key,), "must not be null")
            return None
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            got = show(value) if isinstance(value, str) else kind_of(value)
            self.issue((key,), f"expected 1-200 characters of A-Z a-z 0-9 _ . : -, got {got}")
            return None
        return value

    def text(self, obj: Mapping[str, Any], key: str, limit: int) -> str | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.issue((key,), f"expected a string, got {kind_of(value)}")
            return None
        if len(value) > limit:
            self.issue((key,), f"longer than {limit} characters")
            return None
        return value

    def join(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.issue(("join",), f"expected a list of param names, got {kind_of(value)}")
            return ()
        if len(value) > MAX_JOIN_KEYS:
            self.issue(("join",), f"more than {MAX_JOIN_KEYS} join keys")
            return ()
        keys: list[str] = []
        for i, key in enumerate(value):
            if not isinstance(key, str) or not PARAM_RE.fullmatch(key):
                got = show(key) if isinstance(key, str) else kind_of(key)
                self.issue(
                    ("join", i),
                    f"invalid param name {got}: expected [A-Za-z_][A-Za-z0-9_.-]{{0,63}}",
                )
            elif key in keys:
                self.issue(("join", i), f"duplicate join key '{key}'")
            else:
                keys.append(key)
        return tuple(keys)

    def on_update(self, value: Any) -> Literal["ignore", "refire"]:
        if value is None or value == "ignore":
            return "ignore"
        if value == "refire":
            return "refire"
        got = show(value) if isinstance(value, str) else kind_of(value)
        self.issue(("on_update",), f"expected 'ignore' or 'refire', got {got}")
        return "ignore"

    def lookback(self, obj: Mapping[str, Any]) -> int:
        key = "lookback_s" if self.canonical else "lookback"
        value = obj.get(key)
        if value is None:
            return DEFAULT_LOOKBACK_S
        if self.canonical:
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_DURATION_S
            ):
                self.issue((key,), f"expected whole seconds from 0 to {MAX_DURATION_S}")
                return DEFAULT_LOOKBACK_S
            return value
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.issue((key,), str(exc))
            return DEFAULT_LOOKBACK_S

    # -- conditions ------------------------------------------------------------------

    def node(self, obj: Any, path: Path, depth: int, leaves: _Leaves) -> dict[str, Any] | None:
        if depth > MAX_CONDITION_DEPTH:
            self.issue(path, f"conditions nested deeper than {MAX_CONDITION_DEPTH} levels")
            return None
        if not isinstance(obj, Mapping):
            self.issue(
                path,
                f"expected a condition (a mapping with signal, all, any or at_least), got {kind_of(obj)}",
            )
            return None
        kinds = [k for k in ("signal", *COMBINATORS) if k in obj]
        if not kinds:
            extra = ""
            if len(obj) == 1:
                only = next(iter(obj))
                close = difflib.get_close_matches(
                    str(only), ("signal", *COMBINATORS), n=1, cutoff=0.6
                )
                extra = f"; unknown key {show(only)}" + (
                    f" (did you mean '{close[0]}'?)" if close else ""
                )
            elif obj:
                extra = "; unknown keys " + ", ".join(show(k) for k in list(obj)[:10])
            self.issue(path, f"a condition needs one of 'signal', 'all', 'any', 'at_least'{extra}")
            return None
        if len(kinds) > 1:
            self.issue(
                path,
                "a condition has exactly one of 'signal', 'all', 'any', 'at_least'; got "
                + ", ".join(f"'{k}'" for k in kinds),
            )
            return None
        kind = kinds[0]
        if kind == "signal":
            return self.leaf(obj, path, leaves)
        self.unknown_keys(obj, path, (kind,))
        if kind == "at_least":
            return self.at_least(obj["at_least"], (*path, "at_least"), depth, leaves)
        children = self.children(obj[kind], (*path, kind), depth, leaves)
        return None if children is None else {kind: children}

    def children(
        self, value: Any, path: Path, depth: int, leaves: _Leaves
    ) -> list[dict[str, Any]] | None:
        if not isinstance(value, list | tuple) or not value:
            got = "an empty list" if isinstance(value, list | tuple) else kind_of(value)
            self.issue(path, f"expected a non-empty list of conditions, got {got}")
            return None
        out = [self.node(child, (*path, i), depth + 1, leaves) for i, child in enumerate(value)]
        if any(c is None for c in out):
            return None
        return [c for c in out if c is not None]

    def at_least(
        self, value: Any, path: Path, depth: int, leaves: _Leaves
    ) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            self.issue(path, f"expected a mapping with 'count' and 'of', got {kind_of(value)}")
            return None
        self.unknown_keys(value, path, ("count", "of"))
        for key in ("count", "of"):
            if key not in value:
                self.issue(path, f"missing required key '{key}'")
        children = (
            self.children(value["of"], (*path, "of"), depth, leaves) if "of" in value else None
        )
        count = value.get("count")
        if "count" in value and (isinstance(count, bool) or not isinstance(count, int)):
            self.issue((*path, "count"), f"expected an integer, got {kind_of(count)}")
            return None
        if children is None or count is None:
            return None
        if not 1 <= count <= len(children):
            self.issue(
                (*path, "count"),
                f"must be between 1 and {len(children)} (the number of conditions in 'of'), got {count}",
            )
            return None
        return {"at_least": {"count": count, "of": children}}

    def leaf(self, obj: Mapping[str, Any], path: Path, leaves: _Leaves) -> dict[str, Any] | None:
        leaves.count += 1
        if leaves.count > MAX_LEAVES and not leaves.over_limit:
            leaves.over_limit = True
            self.issue(("when",), f"more than {MAX_LEAVES} signal conditions in one trigger")
        start = len(self.issues)
        self.unknown_keys(obj, path, LEAF_KEYS)
        signal = obj["signal"]
        if not isinstance(signal, str) or not NAME_RE.fullmatch(signal):
            got = show(signal) if isinstance(signal, str) else kind_of(signal)
            self.issue(
                (*path, "signal"),
                f"expected a signal name of 1-200 characters of A-Z a-z 0-9 _ . : -, got {got}",
            )
        where = self.where(obj.get("where"), (*path, "where"))
        alias = self.alias(obj.get("as"), (*path, "as"), leaves)
        join_as = self.join_as(obj.get("join_as"), (*path, "join_as"))
        if len(self.issues) > start:
            return None
        return {"signal": signal, "where": where, "as": alias, "join_as": join_as}

    def alias(self, value: Any, path: Path, leaves: _Leaves) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not ALIAS_RE.fullmatch(value):
            got = show(value) if isinstance(value, str) else kind_of(value)
            self.issue(path, f"invalid alias {got}: expected [A-Za-z_][A-Za-z0-9_]{{0,63}}")
            return None
        if value in leaves.aliases:
            self.issue(
                path, f"alias '{value}' is already used at {format_path(leaves.aliases[value])}"
            )
            return None
        leaves.aliases[value] = path
        return value

    def join_as(self, value: Any, path: Path) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.issue(path, f"expected a mapping of join key to param name, got {kind_of(value)}")
            return {}
        out: dict[str, str] = {}
        for key, param in value.items():
            if key not in self.join_keys:
                declared = ", ".join(self.join_keys) if self.join_keys else "none"
                self.issue(
                    (*path, key),
                    f"{show(key)} is not a join key of this trigger (join: {declared})",
                )
            elif not isinstance(param, str) or not PARAM_RE.fullmatch(param):
                got = show(param) if isinstance(param, str) else kind_of(param)
                self.issue(
                    (*path, key),
                    f"invalid param name {got}: expected [A-Za-z_][A-Za-z0-9_.-]{{0,63}}",
                )
            else:
                out[key] = param
        return out

    def check_alias_collisions(self, leaves: _Leaves) -> None:
        # `{x}` must mean one thing: a join key never equals an alias nor starts with `alias.`.
        for alias, path in leaves.aliases.items():
            if alias in self.join_keys:
                self.issue(
                    path,
                    f"alias '{alias}' is also a join key; rename one so '{{{alias}}}' is unambiguous",
                )
        for i, key in enumerate(self.join_keys):
            head = key.split(".", 1)[0]
            if "." in key and head in leaves.aliases:
                self.issue(
                    ("join", i),
                    f"join key '{key}' reads like a field of alias '{head}' in templates; rename one",
                )

    # -- where -----------------------------------------------------------------------

    def where(self, value: Any, path: Path) -> dict[str, dict[str, Any]]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.issue(path, f"expected a mapping of param name to predicate, got {kind_of(value)}")
            return {}
        out: dict[str, dict[str, Any]] = {}
        for param, pred in value.items():
            ppath = (*path, param)
            if not isinstance(param, str) or not PARAM_RE.fullmatch(param):
                self.issue(
                    path,
                    f"invalid param name {show(param)}: expected [A-Za-z_][A-Za-z0-9_.-]{{0,63}}",
                    at=ppath,
                )
                continue
            normal = self.predicate(pred, ppath)
            if normal is not None:
                out[param] = normal
        return out

    def predicate(self, pred: Any, path: Path) -> dict[str, Any] | None:
        if pred is None:
            self.issue(path, "null is not a valid value (use {exists: false} for a missing param)")
            return None
        if isinstance(pred, list | tuple):
            self.issue(path, "a list needs an operator, e.g. {in: [...]}")
            return None
        if not isinstance(pred, Mapping):
            return (
                {"eq": pred}
                if self.scalar(pred, path, numbers=True, strings=True, booleans=True)
                else None
            )
        if not pred:
            self.issue(path, "no operator given (one of " + ", ".join(OPERATORS) + ")")
            return None
        out: dict[str, Any] = {}
        ok = True
        for op, operand in pred.items():
            if op not in OPERATORS:
                self.issue(
                    path,
                    f"unknown operator {show(op)}",
                    at=(*path, op) if isinstance(op, str) else path,
                )
                ok = False
            elif self.operand(op, operand, (*path, op)):
                out[op] = list(operand) if op in ("in", "not_in") else operand
            else:
                ok = False
        return out if ok else None

    def operand(self, op: str, value: Any, path: Path) -> bool:
        if op in ("eq", "ne"):
            return self.scalar(value, path, numbers=True, strings=True, booleans=True)
        if op in COMPARISON_OPS:
            return self.scalar(value, path, numbers=True, strings=True, booleans=False)
        if op == "prefix":
            return self.scalar(value, path, numbers=False, strings=True, booleans=False)
        if op == "exists":
            if not isinstance(value, bool):
                self.issue(path, f"expected true or false, got {kind_of(value)}")
                return False
            return True
        # in / not_in
        if not isinstance(value, list | tuple) or not value:
            got = "an empty list" if isinstance(value, list | tuple) else kind_of(value)
            self.issue(
                path, f"expected a non-empty list of strings, numbers or booleans, got {got}"
            )
            return False
        if len(value) > MAX_LIST_ITEMS:
            self.issue(path, f"more than {MAX_LIST_ITEMS} items")
            return False
        results = [
            self.scalar(item, (*path, i), numbers=True, strings=True, booleans=True)
            for i, item in enumerate(value)
        ]
        return all(results)

    def scalar(
        self, value: Any, path: Path, *, numbers: bool, strings: bool, booleans: bool
    ) -> bool:
        wanted = [
            w
            for w, on in (("a string", strings), ("a number", numbers), ("a boolean", booleans))
            if on
        ]
        expected = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
        if isinstance(value, bool):
            ok = booleans
        elif isinstance(value, int | float):
            ok = numbers
        elif isinstance(value, str):
            ok = strings
        else:
            ok = False
        if not ok:
            extra = " (use {exists: false} for a missing param)" if value is None else ""
            self.issue(path, f"expected {expected}, got {kind_of(value)}{extra}")
            return False
        return self.plain_value_ok(value, path)

    def plain_value_ok(self, value: Any, path: Path) -> bool:
        if isinstance(value, bool):
            return True
        if isinstance(value, int) and abs(value) > MAX_SAFE_INT:
            self.issue(path, "integer out of range (beyond ±(2^53-1))")
            return False
        if isinstance(value, float) and not math.isfinite(value):
            self.issue(path, "numbers must be finite (no .nan or .inf)")
            return False
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            self.issue(path, f"string longer than {MAX_STRING_CHARS} characters")
            return False
        return True

    # -- params ----------------------------------------------------------------------

    def params(self, value: Any, aliases: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        path: Path = ("params",)
        if not isinstance(value, Mapping):
            self.issue(path, f"expected a mapping of param name to value, got {kind_of(value)}")
            return {}
        if len(value) > MAX_PARAMS:
            self.issue(path, f"more than {MAX_PARAMS} params")
            return {}
        out: dict[str, Any] = {}
        for name, raw in value.items():
            ppath = (*path, name)
            if not isinstance(name, str) or not PARAM_RE.fullmatch(name):
                self.issue(
                    path,
                    f"invalid param name {show(name)}: expected [A-Za-z_][A-Za-z0-9_.-]{{0,63}}",
                    at=ppath,
                )
                continue
            if isinstance(raw, Mapping) and list(raw) == ["template"]:
                if not self.canonical:
                    self.issue(
                        ppath,
                        "a mapping whose only key is 'template' is reserved; write the template as a plain string",
                    )
                    continue
                text = raw["template"]
                if not isinstance(text, str):
                    self.issue((*ppath, "template"), f"expected a string, got {kind_of(text)}")
                    continue
                template = self.template(text, ppath, aliases)
                if template is not None:
                    out[name] = {"template": text}
            elif isinstance(raw, str) and not self.canonical:
                template = self.template(raw, ppath, aliases)
                if template is not None:
                    literal = template.literal
                    out[name] = {"template": raw} if literal is None else literal
            else:
                ok, copied = self.literal(raw, ppath, 0)
                if ok:
                    out[name] = copied
        return out

    def template(self, text: str, path: Path, aliases: set[str]) -> Template | None:
        try:
            template = parse_template(text)
        except TemplateError as exc:
            self.issue(path, str(exc))
            return None
        ok = True
        for ref in template.refs:
            problem = self.ref_problem(ref, aliases)
            if problem is not None:
                self.issue(path, problem)
                ok = False
        return template if ok else None

    def ref_problem(self, ref: Ref, aliases: set[str]) -> str | None:
        if ref.text in self.join_keys:
            return None
        head, tail = ref.head, ref.tail
        if head not in aliases:
            if tail is None:
                return f"unknown template reference {show(str(ref))}: not a join key or alias of this trigger"
            return f"unknown template reference {show(str(ref))}: '{head}' is not an alias of this trigger"
        if tail is None:
            return (
                f"template reference {show(str(ref))} names alias '{head}' but no field: "
                f"use {{{head}.id}}, {{{head}.payload...}} or {{{head}.PARAM}}"
            )
        if tail in ("id", "payload"):
            return None
        if tail.startswith("payload."):
            if any(not seg for seg in tail.split(".")[1:]):
                return f"empty segment in payload path of template reference {show(str(ref))}"
            return None
        if not PARAM_RE.fullmatch(tail):
            return f"invalid param name in template reference {show(str(ref))}"
        return None

    def literal(self, value: Any, path: Path, depth: int) -> tuple[bool, Any]:
        if value is None or isinstance(value, bool | int | float | str):
            return self.plain_value_ok(value, path), value
        if depth >= MAX_LITERAL_DEPTH:
            self.issue(path, f"value nested deeper than {MAX_LITERAL_DEPTH} levels")
            return False, None
        if isinstance(value, list | tuple):
            if len(value) > MAX_LIST_ITEMS:
                self.issue(path, f"more than {MAX_LIST_ITEMS} items")
                return False, None
            items = [self.literal(v, (*path, i), depth + 1) for i, v in enumerate(value)]
            return all(ok for ok, _ in items), [v for _, v in items]
        if isinstance(value, Mapping):
            if len(value) > MAX_LIST_ITEMS:
                self.issue(path, f"more than {MAX_LIST_ITEMS} keys")
                return False, None
            ok = True
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    self.issue(path, f"mapping keys must be strings, got {kind_of(key)}")
                    ok = False
                    continue
                if len(key) > MAX_STRING_CHARS:
                    self.issue(path, f"mapping key longer than {MAX_STRING_CHARS} characters")
                    ok = False
                    continue
                item_ok, out[key] = self.literal(item, (*path, key), depth + 1)
                ok = ok and item_ok
            return ok, out
        self.issue(path, f"unsupported value of type {kind_of(value)}")
        return False, None
