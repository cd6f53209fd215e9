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
from dataclasses import dataclass, field
from typing import Any

import rfc8785

Check = Callable[[Any], bool]
MISSING: Any = object()


def canonical(obj: Any) -> bytes:
    """RFC 8785 canonical JSON bytes."""
    return rfc8785.dumps(obj)


def _plain(values: Any) -> bool:
    # json.dumps agrees with RFC 8785 on strings, booleans and integers (ASCII keys
    # sorted the same way); floats need the ECMAScript number form, so they go slow.
    return all(v.__class__ is not float for v in values)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_dumps_sorted = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def tuple_key(values: tuple[Any, ...] | list[Any] | None) -> str:
    """The text key of a join tuple: canonical JSON of the value list (``null`` for none)."""
    if values is None:
        return "null"
    if _plain(values):
        return _dumps(list(values))
    return canonical(list(values)).decode()


def command_id(trigger_id: str, join: Mapping[str, Any] | None, generation: int) -> str:
    """SHA-256 hex of the canonical JSON of ``[trigger_id, join_object, generation]``."""
    if join is None or _plain(join.values()):
        text = _dumps_sorted([trigger_id, join, generation]).encode()
    else:
        text = canonical([trigger_id, join, generation])
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


# --- compiled structures ---------------------------------------------------------


@dataclass(slots=True, eq=False)
class LeafClass:
    """Signals of one name, one ``where`` and one way of reading the join tuple."""

    key: str
    name: str
    where: dict[str, dict[str, Any]]
    join_src: tuple[str, ...]
    checks: tuple[tuple[str, Check], ...]
    uses: list[CompiledTrigger] = field(default_factory=list)
    """The triggers with a leaf of this class (once per such leaf)."""
    refire_uses: list[CompiledTrigger] = field(default_factory=list)
    """The ``on_update: refire`` join triggers among them (once each)."""

    def leaf_indexes(self, trig: CompiledTrigger) -> list[int]:
        """Which of a trigger's leaves are of this class."""
        return [i for i, k in enumerate(trig.lc_keys) if k == self.key]

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


@dataclass(slots=True, eq=False)
class CompiledTrigger:
    """A trigger as the matcher runs it."""

    id: str
    version: int
    workflow: str
    step: str | None
    join: tuple[str, ...]
    refire: bool
    params: dict[str, Any]
    lookback_s: int
    leaves: tuple[CompiledLeaf, ...]
    tree: Node
    full_mask: int
    all_leaves: bool
    lc_keys: tuple[str, ...] = ()
    """The leaves' class keys, in leaf order (the hot check reads only these)."""
    min_seq: int = 0
    """Look-back horizon: signals with a lower seq never count for this trigger."""

    def satisfied(self, mask: int) -> bool:
        """Whether the condition tree holds when exactly the leaves in ``mask`` are satisfied."""
        if self.all_leaves:
            return mask == self.full_mask
        return _eval(self.tree, mask)

    def join_object(self, values: tuple[Any, ...] | None) -> dict[str, Any] | None:
        if not self.join:
            return None
        assert values is not None
        return dict(zip(self.join, values, strict=True))


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


def _freeze(v: Any) -> Any:
    """A hashable, order-insensitive image of a JSON value (type-tagged scalars)."""
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("[", *(_freeze(x) for x in v))
    return (v.__class__.__name__, v)


class LeafClassRegistry:
    """Interns leaf classes so identical leaves across triggers share one object."""

    def __init__(self) -> None:
        self.by_key: dict[str, LeafClass] = {}
        self._memo: dict[Any, LeafClass] = {}
        # Immutable pieces many triggers have in common (trees, key tuples, join keys)
        # are shared rather than repeated: a million triggers must fit in about 1 GB.
        self._shared: dict[Any, Any] = {}

    def share(self, value: Any) -> Any:
        """One shared instance per equal immutable value."""
        return self._shared.setdefault(value, value)

    def get(self, name: str, where: dict[str, dict[str, Any]], join_src: tuple[str, ...]) -> LeafClass:
        frozen = (name, join_src, _freeze(where))
        lc = self._memo.get(frozen)
        if lc is not None and self.by_key.get(lc.key) is lc:
            return lc
        # Sorted-key JSON is stable across processes and versions, which is all a key
        # needs; it is several times faster than the RFC 8785 encoder.
        text = json.dumps([name, where, join_src], sort_keys=True, separators=(",", ":"))
        key = hashlib.sha256(text.encode()).hexdigest()[:24]
        lc = self.by_key.get(key)
        if lc is None:
            checks = tuple((p, compile_predicate(ops)) for p, ops in sorted(where.items()))
            lc = LeafClass(key=key, name=name, where=where, join_src=join_src, checks=checks)
            self.by_key[key] = lc
        self._memo[frozen] = lc
        return lc

    def forget(self, lc: LeafClass) -> None:
        """Drop a leaf class nobody uses any more."""
        self.by_key.pop(lc.key, None)
        self._memo.pop((lc.name, lc.join_src, _freeze(lc.where)), None)


def compile_trigger(
    definition: Mapping[str, Any], version: int, registry: LeafClassRegistry
) -> CompiledTrigger:
    """Compile one canonical definition. Leaf classes come from (and stay in) ``registry``;
    the caller links ``lc.uses`` when it installs the trigger (see ``TriggerIndex``)."""
    share = registry.share
    join = share(tuple(definition.get("join") or ()))
    leaves: list[CompiledLeaf] = []

    def walk(node: Mapping[str, Any], path: str) -> Node:
        if "signal" in node:
            join_as = node.get("join_as") or {}
            src = share(tuple(join_as.get(k, k) for k in join))
            lc = registry.get(node["signal"], dict(node.get("where") or {}), src)
            idx = len(leaves)
            alias = node.get("as")
            leaves.append(CompiledLeaf(idx, sys.intern(alias or path), alias, sys.intern(path), lc))
            return share(("leaf", idx))  # type: ignore[no-any-return]
        if "all" in node:
            kids = tuple(walk(c, f"{path}.all[{i}]") for i, c in enumerate(node["all"]))
            return share(("all", kids))  # type: ignore[no-any-return]
        if "any" in node:
            kids = tuple(walk(c, f"{path}.any[{i}]") for i, c in enumerate(node["any"]))
            return share(("any", kids))  # type: ignore[no-any-return]
        spec = node["at_least"]
        kids = tuple(walk(c, f"{path}.at_least.of[{i}]") for i, c in enumerate(spec["of"]))
        return share(("atl", int(spec["count"]), kids))  # type: ignore[no-any-return]

    tree = walk(definition["when"], "when")
    all_leaves = tree[0] == "leaf" or (
        tree[0] == "all" and all(c[0] == "leaf" for c in tree[1])
    )
    params = definition.get("params") or _NO_PARAMS
    return CompiledTrigger(
        id=definition["id"],
        version=version,
        workflow=sys.intern(definition["workflow"]),
        step=definition.get("step"),
        join=join,
        refire=definition.get("on_update", "ignore") == "refire",
        params=dict(params) if params else _NO_PARAMS,
        lookback_s=int(definition.get("lookback_s", 7 * 86400)),
        leaves=share(tuple(leaves)),
        tree=tree,
        full_mask=(1 << len(leaves)) - 1,
        all_leaves=all_leaves,
        lc_keys=share(tuple(leaf.lc.key for leaf in leaves)),
    )


_NO_PARAMS: dict[str, Any] = {}  # shared by triggers without command params; never mutated
