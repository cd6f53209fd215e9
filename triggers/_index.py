"""The trigger index: from a signal to the leaf classes that accept it, without a scan.

Leaf classes are bucketed by signal name, then by one equality-like predicate
(``eq`` or each member of ``in``) keyed by JSON-typed value, or by a ``prefix``
(looked up by the prefixes of the param value whose lengths occur in the bucket).
Only leaf classes with neither fall back to a per-name list that is scanned. A
signal therefore touches the leaf classes that can use it, whatever the number of
triggers installed. A class whose ``where`` is just its indexed predicate is
``exact``: being found proves it accepts the signal, and no check runs.

A slot holds one leaf class, or a list when several share the key (most keys have one).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any

from ._compile import CompiledTrigger, LeafClass, LeafClassRegistry, value_key

_Slot = LeafClass | list[LeafClass]


class _NameBucket:
    __slots__ = ("eq", "prefix", "prefix_lengths", "prefix_counts", "scan")

    def __init__(self) -> None:
        self.eq: dict[str, dict[Any, _Slot]] = {}
        self.prefix: dict[str, dict[str, _Slot]] = {}
        self.prefix_lengths: dict[str, list[int]] = {}
        """Per param, the sorted distinct lengths of its prefixes."""
        self.prefix_counts: dict[str, dict[int, int]] = {}
        """Per param, how many prefixes have each length."""
        self.scan: list[LeafClass] = []

    def empty(self) -> bool:
        return not (self.eq or self.prefix or self.scan)


def _index_entry(where: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, list[Any], bool]:
    """How a leaf class is filed: ("eq", param, keys) | ("prefix", param, [p]) | ("scan", "",
    []), and whether that predicate is its whole ``where``."""
    alone = len(where) == 1
    for param in sorted(where):
        ops = where[param]
        if "eq" in ops:
            return ("eq", param, [value_key(ops["eq"])], alone and len(ops) == 1)
    for param in sorted(where):
        ops = where[param]
        if "in" in ops:
            keys = sorted({value_key(v) for v in ops["in"]}, key=repr)
            return ("eq", param, keys, alone and len(ops) == 1)
    for param in sorted(where):
        ops = where[param]
        if "prefix" in ops:
            return ("prefix", param, [ops["prefix"]], alone and len(ops) == 1)
    return ("scan", "", [], False)


def _put(slots: dict[Any, _Slot], k: Any, lc: LeafClass) -> None:
    cur = slots.get(k)
    if cur is None:
        slots[k] = lc
    elif cur.__class__ is list:
        cur.append(lc)
    else:
        slots[k] = [cur, lc]  # type: ignore[list-item]


def _take(slots: dict[Any, _Slot], k: Any, lc: LeafClass) -> bool:
    """Remove ``lc`` from a slot; True when the key is gone."""
    cur = slots.get(k)
    if cur is None:
        return True
    if cur.__class__ is list:
        rest = [x for x in cur if x is not lc]
        if len(rest) > 1:
            slots[k] = rest
            return False
        if rest:
            slots[k] = rest[0]
            return False
    elif cur is not lc:
        return False
    del slots[k]
    return True


_SMALL = 8
_Uses = list[CompiledTrigger] | tuple[CompiledTrigger, ...]


def _with(uses: _Uses, trigger: CompiledTrigger) -> _Uses:
    """``uses`` plus one: a tuple while small (most leaf classes have one to three
    users, and a tuple of one is half a list's size), a list beyond."""
    if uses.__class__ is list:
        uses.append(trigger)
        return uses
    if len(uses) < _SMALL:
        return (*uses, trigger)
    return [*uses, trigger]


def _without(uses: _Uses, trigger: CompiledTrigger) -> _Uses:
    rest = [u for u in uses if u is not trigger]
    return rest if len(rest) > _SMALL else tuple(rest)


class TriggerIndex:
    """Installed triggers and the index over their leaf classes."""

    def __init__(self) -> None:
        self.registry = LeafClassRegistry()
        self.triggers: dict[str, CompiledTrigger] = {}
        self._names: dict[str, _NameBucket] = {}

    def __len__(self) -> int:
        return len(self.triggers)

    def install(self, trigger: CompiledTrigger) -> None:
        """Install (or replace) a trigger; its leaf classes must come from ``self.registry``."""
        if trigger.id in self.triggers:
            self.remove(trigger.id)
        self.triggers[trigger.id] = trigger
        for lc in trigger.lcs:
            if not lc.uses:
                # replacing a trigger may just have made the registry forget this class
                self.registry.by_key.setdefault(lc.key, lc)
                self._file(lc)
            lc.uses = _with(lc.uses, trigger)
        form = trigger.form
        if form.refire and form.join:
            for lc in dict.fromkeys(trigger.lcs):
                lc.refire_uses = _with(lc.refire_uses, trigger)

    def remove(self, trigger_id: str) -> CompiledTrigger | None:
        """Uninstall a trigger; leaf classes nobody uses any more leave the index."""
        trigger = self.triggers.pop(trigger_id, None)
        if trigger is None:
            return None
        for lc in trigger.lcs:
            lc.uses = _without(lc.uses, trigger)
            if lc.refire_uses:
                lc.refire_uses = _without(lc.refire_uses, trigger)
            if not lc.uses:
                self._unfile(lc)
                self.registry.forget(lc)
        return trigger

    def _file(self, lc: LeafClass) -> None:
        bucket = self._names.get(lc.name)
        if bucket is None:
            bucket = self._names[lc.name] = _NameBucket()
        where = self.registry.unfiled.pop(lc.key, None)
        kind, param, keys, exact = _index_entry(lc.where if where is None else where)
        lc.exact = exact
        if kind == "eq":
            by_value = bucket.eq.get(param)
            if by_value is None:
                by_value = bucket.eq[param] = {}
            for k in keys:
                _put(by_value, k, lc)
        elif kind == "prefix":
            by_prefix = bucket.prefix.get(param)
            if by_prefix is None:
                by_prefix = bucket.prefix[param] = {}
                bucket.prefix_lengths[param] = []
                bucket.prefix_counts[param] = {}
            p = keys[0]
            if p not in by_prefix:
                counts = bucket.prefix_counts[param]
                n = counts.get(len(p), 0)
                counts[len(p)] = n + 1
                if n == 0:
                    bisect.insort(bucket.prefix_lengths[param], len(p))
            _put(by_prefix, p, lc)
        else:
            bucket.scan.append(lc)

    def _unfile(self, lc: LeafClass) -> None:
        bucket = self._names.get(lc.name)
        if bucket is None:
            return
        kind, param, keys, _ = _index_entry(lc.where)
        if kind == "eq":
            by_value = bucket.eq.get(param, {})
            for k in keys:
                _take(by_value, k, lc)
            if not by_value:
                bucket.eq.pop(param, None)
        elif kind == "prefix":
            by_prefix = bucket.prefix.get(param, {})
            p = keys[0]
            if p in by_prefix and _take(by_prefix, p, lc):
                counts = bucket.prefix_counts[param]
                n = counts.pop(len(p), 0) - 1
                if n > 0:
                    counts[len(p)] = n
                else:
                    lengths = bucket.prefix_lengths[param]
                    del lengths[bisect.bisect_left(lengths, len(p))]
            if not by_prefix:
                bucket.prefix.pop(param, None)
                bucket.prefix_lengths.pop(param, None)
                bucket.prefix_counts.pop(param, None)
        else:
            bucket.scan = [x for x in bucket.scan if x is not lc]
        if bucket.empty():
            del self._names[lc.name]

    def candidates(self, name: str, params: Mapping[str, Any]) -> list[LeafClass]:
        """The leaf classes whose name and whole ``where`` accept this signal."""
        bucket = self._names.get(name)
        if bucket is None:
            return []
        found: list[LeafClass] = []
        for param, by_value in bucket.eq.items():
            v = params.get(param)
            if v is None:
                continue
            x = by_value.get(value_key(v))
            if x is not None:
                if x.__class__ is list:
                    found.extend(x)
                else:
                    found.append(x)  # type: ignore[arg-type]
        for param, by_prefix in bucket.prefix.items():
            v = params.get(param)
            if v.__class__ is not str:
                continue
            n = len(v)
            for length in bucket.prefix_lengths[param]:
                if length > n:
                    break
                x = by_prefix.get(v[:length])
                if x is not None:
                    if x.__class__ is list:
                        found.extend(x)
                    else:
                        found.append(x)  # type: ignore[arg-type]
        if bucket.scan:
            found.extend(bucket.scan)
        return [lc for lc in found if lc.exact or lc.accepts(params)]

    def names(self) -> Iterable[str]:
        return self._names.keys()
