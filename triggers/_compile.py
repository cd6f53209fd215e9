"""Compile canonical trigger definitions into compact, fast structures for the matcher.

The canonical form (see ``_spec.py``) is what ``apply`` validates and the store keeps.
The worker never holds pydantic models for its triggers: with a million triggers every
byte counts, so a trigger becomes a ``CompiledTrigger`` (slots, tuples) whose leaves
point at shared ``LeafClass`` objects.

A *leaf class* is the triple (signal name, ``where``, join source params). Many
triggers share leaf classes (every trigger that waits for ``db.orders`` on ``dt``), and
hit state is kept per leaf class and join tuple, not per trigger: a signal then costs
one state write per leaf class it matches, however many triggers use that class.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import rfc8785

Check = Callable[[Any], bool]
MISSING: Any = object()


def canonical(obj: Any) -> bytes:
    """RFC 8785 canonical JSON bytes."""
    return rfc8785.dumps(obj)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_sorted = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


# orjson writes strings, integers, booleans and null exactly as the json module does
# here (tests/triggers/test_compile.py compares them), ~5x faster; it refuses integers
# beyond 64 bits and lone surrogates, which then take the json module's path.
_odumps = orjson.dumps
_OSORT = orjson.OPT_SORT_KEYS
_OError = orjson.JSONEncodeError


def tuple_key(values: tuple[Any, ...] | list[Any] | None) -> str:
    """The text key of a join tuple: canonical JSON of the value list (``null`` for none)."""
    if values is None:
        return "null"
    for v in values:
        if v.__class__ is float:
            return canonical(list(values)).decode()
    try:
        return _odumps(values).decode()
    except _OError:
        return _dumps(list(values))


def command_id(trigger_id: str, join: Mapping[str, Any] | None, generation: int) -> str:
    """SHA-256 hex of the canonical JSON of ``[trigger_id, join_object, generation]``."""
    if join is not None:
        for v in join.values():
            if v.__class__ is float:
                return hashlib.sha256(canonical([trigger_id, join, generation])).hexdigest()
    try:
        text = _odumps([trigger_id, join, generation], option=_OSORT)
    except _OError:
        text = _dumps_sorted([trigger_id, join, generation]).encode()
    return hashlib.sha256(text).hexdigest()


# --- predicates -----------------------------------------------------------------


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "b"
    if isinstance(v, int | float):
        return "n"
    if isinstance(v, str):
        return "s"
    return "?"


def value_key(v: Any) -> Any:
    """A hashable key under which JSON-equal scalars collide and others do not.

    Python says ``1 == 1.0 == True``; JSON says ``true`` is no number, and ``"7"`` no 7.
    """
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return ("b", v)
    return ("n", v)


def _eq(bound: Any) -> Check:
    kind = _kind(bound)
    if kind == "s":
        return lambda v: v == bound and v.__class__ is str
    if kind == "b":
        return lambda v: v is bound
    return lambda v: v == bound and _kind(v) == "n"


def _order(op: str, bound: Any) -> Check:
    kind = _kind(bound)
    if op == "lt":
        return lambda v: _kind(v) == kind and v < bound
    if op == "lte":
        return lambda v: _kind(v) == kind and v <= bound
    if op == "gt":
        return lambda v: _kind(v) == kind and v > bound
    return lambda v: _kind(v) == kind and v >= bound


def _in(values: list[Any]) -> Check:
    keys = frozenset(value_key(x) for x in values)
    return lambda v: value_key(v) in keys


def _negate(check: Check) -> Check:
    return lambda v: not check(v)


def _prefix(p: str) -> Check:
    return lambda v: v.__class__ is str and bool(v.startswith(p))


def compile_predicate(ops: Mapping[str, Any]) -> Check:
    """One param's predicate mapping (``{"gte": a, "lt": b}``) as one function.

    The function receives the param value or ``MISSING``. A missing param fails every
    predicate except ``exists: false``; comparisons across types are false.
    """
    checks: list[Check] = []
    exists: bool | None = None
    for op, bound in ops.items():
        if op == "exists":
            exists = bool(bound)
        elif op == "eq":
            checks.append(_eq(bound))
        elif op == "ne":
            checks.append(_negate(_eq(bound)))
        elif op in ("lt", "lte", "gt", "gte"):
            checks.append(_order(op, bound))
        elif op == "in":
            checks.append(_in(bound))
        elif op == "not_in":
            checks.append(_negate(_in(bound)))
        elif op == "prefix":
            checks.append(_prefix(bound))
        else:  # validated at apply time; a stored definition cannot hold one
            raise ValueError(f"unknown operator {op!r}")
    if exists is False:
        # absent is required; any other operator would need a value, so nothing can hold
        return (lambda v: v is MISSING) if not checks else (lambda v: False)
    if len(checks) == 1:
        only = checks[0]
        return lambda v: v is not MISSING and only(v)
    return lambda v: v is not MISSING and all(c(v) for c in checks)


_LIST_OPS = frozenset(("in", "not_in"))
_SHAPES: dict[tuple[str, str | None, str | None], tuple[str, str | None, str | None]] = {}


def _shape(name: str, param: str | None, op: str | None) -> tuple[str, str | None, str | None]:
    key = (name, param, op)
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _MEMO_MAX:
            _SHAPES.clear()
        shape = (sys.intern(name), param and sys.intern(param), op and sys.intern(op))
        _SHAPES[key] = shape
    return shape


# --- compiled structures ---------------------------------------------------------
#
# Sizes matter here: a worker holds every trigger, and a million triggers must fit in
# about 1 GiB all-in (some 900 bytes a trigger, leaf classes included). So a trigger is
# one small slotted object pointing at shared pieces: its ``_Form`` (tree, labels,
# aliases, join keys: identical for most triggers), its params and workflow (shared when
# equal) and its leaf classes. ``CompiledLeaf`` objects are made on demand.


class LeafClass:
    """Signals of one name, one ``where`` and one way of reading the join tuple.

    Kept small (a million triggers hold about a million of them). A ``where`` of one
    param and one operator (``{table: {eq: db.orders}}``, the usual case) is kept as a
    shared (name, param, operator) triple and the bound, which the index holds anyway;
    any other as its JSON text. Checks are compiled on first use, and the index sets ``exact``
    when finding the class by its indexed predicate already proves that it accepts.
    """

    __slots__ = ("key", "join_src", "_shape", "_bound", "exact", "_checks", "uses",
                 "refire_uses")

    def __init__(self, key: str, name: str, join_src: tuple[str, ...],
                 where: Mapping[str, Mapping[str, Any]]) -> None:
        self.key = key
        self.join_src = join_src
        self._shape: tuple[str, str | None, str | None] = _shape(name, None, None)
        self._bound: Any = None
        if len(where) == 1:
            ((param, ops),) = where.items()
            if len(ops) == 1:
                ((op, bound),) = ops.items()
                self._shape = _shape(name, param, op)
                self._bound = tuple(bound) if op in _LIST_OPS else bound
        if self._shape[1] is None:
            self._bound = _spec_text(where)
        self.exact = False
        self._checks: tuple[tuple[str, Check], ...] | None = None
        self.uses: list[CompiledTrigger] | tuple[CompiledTrigger, ...] = ()
        """The triggers with a leaf of this class (once per such leaf)."""
        self.refire_uses: list[CompiledTrigger] | tuple[CompiledTrigger, ...] = ()
        """The ``on_update: refire`` join triggers among them (once each)."""

    def __repr__(self) -> str:
        return f"LeafClass({self.key}, {self.name}, {self.where})"

    @property
    def name(self) -> str:
        """The signal name."""
        return self._shape[0]

    @property
    def where(self) -> dict[str, dict[str, Any]]:
        """The ``where`` mapping (a fresh copy)."""
        _, param, op = self._shape
        if param is None or op is None:
            where: dict[str, dict[str, Any]] = json.loads(self._bound)
            return where
        bound = list(self._bound) if op in _LIST_OPS else self._bound
        return {param: {op: bound}}

    @property
    def checks(self) -> tuple[tuple[str, Check], ...]:
        """(param, check) per param of the ``where``, compiled on first use."""
        checks = self._checks
        if checks is None:
            checks = self._checks = tuple(
                (p, compile_predicate(ops)) for p, ops in sorted(self.where.items())
            )
        return checks

    def leaf_indexes(self, trig: CompiledTrigger) -> list[int]:
        """Which of a trigger's leaves are of this class."""
        return [i for i, lc in enumerate(trig.lcs) if lc is self]

    def accepts(self, params: Mapping[str, Any]) -> bool:
        """Whether a signal with these params satisfies the ``where`` (name checked elsewhere)."""
        return all(check(params.get(param, MISSING)) for param, check in self.checks)

    def tuple_of(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The join tuple a signal names, or ``None`` when it lacks a join param."""
        if not self.join_src:
            return None
        out = []
        for src in self.join_src:
            v = params.get(src, MISSING)
            if v is MISSING:
                return None
            out.append(v)
        return tuple(out)


@dataclass(slots=True, eq=False)
class CompiledLeaf:
    index: int
    label: str
    alias: str | None
    path: str
    lc: LeafClass


# tree nodes: ("leaf", i) | ("all", children) | ("any", children) | ("atl", k, children)
Node = tuple[Any, ...]


class _Form:
    """What triggers of one shape have in common: tree, leaf labels, join, refire, look-back."""

    __slots__ = ("tree", "all_leaves", "full_mask", "labels", "aliases", "paths", "join",
                 "refire", "lookback_s")

    def __init__(self, text: str) -> None:
        join, refire, lookback_s, aliases, tree = json.loads(text)
        paths: list[str] = [""] * len(aliases)
        self.tree = _form_node(tree, "when", paths)
        self.all_leaves = self.tree[0] == "leaf" or (
            self.tree[0] == "all" and all(c[0] == "leaf" for c in self.tree[1])
        )
        self.full_mask = (1 << len(aliases)) - 1
        self.aliases = tuple(None if a is None else sys.intern(a) for a in aliases)
        self.paths = tuple(paths)
        self.labels = tuple(a or p for a, p in zip(self.aliases, self.paths, strict=True))
        self.join = tuple(sys.intern(k) for k in join)
        self.refire = bool(refire)
        self.lookback_s = int(lookback_s)


def _form_node(node: Any, path: str, paths: list[str]) -> Node:
    if node.__class__ is int:
        paths[node] = sys.intern(path)
        return ("leaf", node)
    tag = node[0]
    if tag == "atl":
        kids = tuple(_form_node(c, f"{path}.at_least.of[{i}]", paths) for i, c in enumerate(node[2]))
        return ("atl", node[1], kids)
    kids = tuple(_form_node(c, f"{path}.{tag}[{i}]", paths) for i, c in enumerate(node[1]))
    return (tag, kids)


class CompiledTrigger:
    """A trigger as the matcher runs it."""

    __slots__ = ("id", "version", "workflow", "step", "params", "form", "lcs", "min_seq")

    def __init__(self, id: str, version: int, workflow: str, step: str | None,
                 params: dict[str, Any], form: _Form, lcs: tuple[LeafClass, ...]) -> None:
        self.id = id
        self.version = version
        self.workflow = workflow
        self.step = step
        self.params = params
        self.form = form
        self.lcs = lcs
        """The leaves' classes, in leaf order (the hot checks read only these)."""
        self.min_seq = 0
        """Look-back horizon: signals with a lower seq never count for this trigger."""

    def __repr__(self) -> str:
        return f"CompiledTrigger({self.id!r}, v{self.version})"

    @property
    def all_leaves(self) -> bool:
        """The tree is an ``all`` of plain leaves: satisfied when every leaf is."""
        return self.form.all_leaves

    @property
    def join(self) -> tuple[str, ...]:
        return self.form.join

    @property
    def refire(self) -> bool:
        return self.form.refire

    @property
    def lookback_s(self) -> int:
        return self.form.lookback_s

    @property
    def tree(self) -> Node:
        return self.form.tree

    @property
    def full_mask(self) -> int:
        return self.form.full_mask

    @property
    def lc_keys(self) -> tuple[str, ...]:
        """The leaves' class keys, in leaf order."""
        return tuple(lc.key for lc in self.lcs)

    @property
    def leaves(self) -> tuple[CompiledLeaf, ...]:
        """The leaves (made on each call: read them once per use)."""
        f = self.form
        return tuple(
            CompiledLeaf(i, f.labels[i], f.aliases[i], f.paths[i], lc)
            for i, lc in enumerate(self.lcs)
        )

    def satisfied(self, mask: int) -> bool:
        """Whether the condition tree holds when exactly the leaves in ``mask`` are satisfied."""
        form = self.form
        if form.all_leaves:
            return mask == form.full_mask
        return _eval(self.form.tree, mask)

    def join_object(self, values: tuple[Any, ...] | None) -> dict[str, Any] | None:
        join = self.form.join
        if not join:
            return None
        assert values is not None
        return dict(zip(join, values, strict=True))


def _eval(node: Node, mask: int) -> bool:
    tag = node[0]
    if tag == "leaf":
        return bool(mask >> node[1] & 1)
    if tag == "all":
        return all(_eval(c, mask) for c in node[1])
    if tag == "any":
        return any(_eval(c, mask) for c in node[1])
    k, children = node[1], node[2]
    n = 0
    for c in children:
        if _eval(c, mask):
            n += 1
            if n >= k:
                return True
    return False


# --- the compact form ---------------------------------------------------------------
#
# ``apply`` stores, beside each canonical definition, its compact form: text that a
# worker turns into a ``CompiledTrigger`` with a few splits and dictionary look-ups, no
# JSON decoding and no hashing for leaf classes it already knows. Parts are separated
# by RS (JSON text never holds a raw control character):
#
#   TAG RS form RS params RS [workflow, step] RS leaf RS leaf ...
#
# ``form`` is ``[join, refire, lookback_s, aliases, tree]`` (tree: a leaf index, or
# ``["all"|"any", [kids]]``, ``["atl", k, [kids]]``); each leaf is its class key (24
# hex digits) followed by the class spec ``[name, where, join_src]``.

COMPACT_TAG = "c1"
_RS = "\x1e"
_KEY_LEN = 24


def _spec_text(value: Any) -> str:
    # Sorted-key JSON is stable across processes and versions, which is all a key
    # needs; it is several times faster than the RFC 8785 encoder.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def leaf_class_key(spec: str) -> str:
    """A leaf class's key: the first 24 hex digits of SHA-256 of its spec text."""
    return hashlib.sha256(spec.encode()).hexdigest()[:_KEY_LEN]


def compact_form(definition: Mapping[str, Any]) -> str:
    """The compact form of a canonical definition (see above)."""
    join = list(definition.get("join") or ())
    leaves: list[str] = []
    aliases: list[str | None] = []
    tree = _compact_node(definition["when"], join, leaves, aliases)
    form = _spec_text([join, definition.get("on_update", "ignore") == "refire",
                       int(definition.get("lookback_s", 7 * 86400)), aliases, tree])
    head = _spec_text([definition["workflow"], definition.get("step")])
    params = _spec_text(definition.get("params") or {})
    return _RS.join([COMPACT_TAG, form, params, head, *leaves])


def _compact_node(node: Mapping[str, Any], join: list[str], leaves: list[str],
                  aliases: list[str | None]) -> Any:
    # a plain function, not a closure: a recursive closure is a reference cycle, which
    # only the collector frees (and loads run with the collector paused)
    if "signal" in node:
        join_as = node.get("join_as") or {}
        spec = _spec_text(
            [node["signal"], dict(node.get("where") or {}), [join_as.get(k, k) for k in join]]
        )
        leaves.append(leaf_class_key(spec) + spec)
        aliases.append(node.get("as"))
        return len(leaves) - 1
    if "all" in node:
        return ["all", [_compact_node(c, join, leaves, aliases) for c in node["all"]]]
    if "any" in node:
        return ["any", [_compact_node(c, join, leaves, aliases) for c in node["any"]]]
    spec = node["at_least"]
    return ["atl", int(spec["count"]),
            [_compact_node(c, join, leaves, aliases) for c in spec["of"]]]


_MEMO_MAX = 1 << 16


class LeafClassRegistry:
    """Interns leaf classes so identical leaves across triggers share one object, and
    shares the other pieces triggers have in common (forms, params, workflows)."""

    def __init__(self) -> None:
        self.by_key: dict[str, LeafClass] = {}
        self._forms: dict[str, _Form] = {}
        self._params: dict[str, dict[str, Any]] = {"{}": _NO_PARAMS}
        self._heads: dict[str, tuple[str, str | None]] = {}
        self._shared: dict[Any, Any] = {}
        self.unfiled: dict[str, dict[str, dict[str, Any]]] = {}
        """``where`` of classes made but not yet indexed (the index takes it from here
        rather than decoding ``spec`` a second time)."""

    def share(self, value: Any) -> Any:
        """One shared instance per equal immutable value."""
        return self._shared.setdefault(value, value)

    def add(self, key: str, spec: str) -> LeafClass:
        """The class with this key, made from its spec text if new."""
        lc = self.by_key.get(key)
        if lc is None:
            name, where, src = json.loads(spec)
            lc = LeafClass(key, sys.intern(name), self.share(tuple(src)), where)
            self.by_key[key] = lc
            self.unfiled[key] = where
        return lc

    def get(self, name: str, where: dict[str, dict[str, Any]], join_src: tuple[str, ...]) -> LeafClass:
        """The class of a leaf given by its parts."""
        spec = _spec_text([name, where, join_src])
        return self.add(leaf_class_key(spec), spec)

    def forget(self, lc: LeafClass) -> None:
        """Drop a leaf class nobody uses any more."""
        if self.by_key.get(lc.key) is lc:
            del self.by_key[lc.key]
        self.unfiled.pop(lc.key, None)

    def settle(self) -> None:
        """Forget the memos of a load (what they shared stays shared)."""
        self._params = {"{}": _NO_PARAMS}
        self._heads = {}

    def form(self, text: str) -> _Form:
        f = self._forms.get(text)
        if f is None:
            if len(self._forms) >= _MEMO_MAX:
                self._forms.clear()
            f = self._forms[text] = _Form(text)
        return f

    def params(self, text: str) -> dict[str, Any]:
        p = self._params.get(text)
        if p is None:
            if len(self._params) >= _MEMO_MAX:
                self._params.clear()
                self._params["{}"] = _NO_PARAMS
            p = self._params[text] = json.loads(text)
        return p

    def head(self, text: str) -> tuple[str, str | None]:
        h = self._heads.get(text)
        if h is None:
            if len(self._heads) >= _MEMO_MAX:
                self._heads.clear()
            workflow, step = json.loads(text)
            h = self._heads[text] = (sys.intern(workflow), None if step is None else sys.intern(step))
        return h


def compile_compact(
    trigger_id: str, version: int, text: str, registry: LeafClassRegistry
) -> CompiledTrigger:
    """A ``CompiledTrigger`` from its compact form (``compact_form``); leaf classes come
    from (and stay in) ``registry``. Raises ``ValueError`` for text of another format."""
    parts = text.split(_RS)
    if parts[0] != COMPACT_TAG or len(parts) < 5:
        raise ValueError("not a compact trigger form of this version")
    workflow, step = registry.head(parts[3])
    get = registry.by_key.get
    lcs = []
    for leaf in parts[4:]:
        lc = get(leaf[:_KEY_LEN])
        if lc is None:
            lc = registry.add(leaf[:_KEY_LEN], leaf[_KEY_LEN:])
        lcs.append(lc)
    return CompiledTrigger(trigger_id, version, workflow, step, registry.params(parts[2]),
                           registry.form(parts[1]), tuple(lcs))


def compile_trigger(
    definition: Mapping[str, Any], version: int, registry: LeafClassRegistry
) -> CompiledTrigger:
    """Compile one canonical definition. Leaf classes come from (and stay in) ``registry``;
    the caller links ``lc.uses`` when it installs the trigger (see ``TriggerIndex``)."""
    return compile_compact(definition["id"], version, compact_form(definition), registry)


_NO_PARAMS: dict[str, Any] = {}  # shared by triggers without command params; never mutated
