"""The trigger index: from a signal to the leaf classes that accept it, without a scan.

Leaf classes are bucketed by signal name, then by one equality-like predicate
(``eq`` or each member of ``in``) keyed by JSON-typed value, or by a ``prefix``
(looked up by the prefixes of the param value whose lengths occur in the bucket).
Only leaf classes with neither fall back to a per-name list that is scanned. A
signal therefore touches the leaf classes that can use it, whatever the number of
triggers installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._compile import CompiledTrigger, LeafClass, LeafClassRegistry, value_key


class _NameBucket:
    __slots__ = ("eq", "prefix", "prefix_lengths", "scan")

    def __init__(self) -> None:
        self.eq: dict[str, dict[Any, list[LeafClass]]] = {}
        self.prefix: dict[str, dict[str, list[LeafClass]]] = {}
        self.prefix_lengths: dict[str, list[int]] = {}
        self.scan: list[LeafClass] = []

    def empty(self) -> bool:
        return not (self.eq or self.prefix or self.scan)


def _index_entry(lc: LeafClass) -> tuple[str, str, list[Any]]:
    """How a leaf class is filed: ("eq", param, keys) | ("prefix", param, [p]) | ("scan", "", [])."""
    where = lc.where
    for param in sorted(where):
        ops = where[param]
        if "eq" in ops:
            return ("eq", param, [value_key(ops["eq"])])
    for param in sorted(where):
        ops = where[param]
        if "in" in ops:
            return ("eq", param, sorted({value_key(v) for v in ops["in"]}, key=repr))
    for param in sorted(where):
        ops = where[param]
        if "prefix" in ops:
            return ("prefix", param, [ops["prefix"]])
    return ("scan", "", [])


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
        seen: set[int] = set()
        for leaf in trigger.leaves:
            lc = leaf.lc
            if not lc.uses:
                self._file(lc)
            lc.uses.append(trigger)
            if trigger.refire and trigger.join and id(lc) not in seen:
                lc.refire_uses.append(trigger)
            seen.add(id(lc))

    def remove(self, trigger_id: str) -> CompiledTrigger | None:
        """Uninstall a trigger; leaf classes nobody uses any more leave the index."""
        trigger = self.triggers.pop(trigger_id, None)
        if trigger is None:
            return None
        for leaf in trigger.leaves:
            lc = leaf.lc
            lc.uses = [u for u in lc.uses if u is not trigger]
            lc.refire_uses = [u for u in lc.refire_uses if u is not trigger]
            if not lc.uses:
                self._unfile(lc)
                self.registry.forget(lc)
        return trigger

    def _file(self, lc: LeafClass) -> None:
        bucket = self._names.get(lc.name)
        if bucket is None:
            bucket = self._names[lc.name] = _NameBucket()
        kind, param, keys = _index_entry(lc)
        if kind == "eq":
            by_value = bucket.eq.setdefault(param, {})
            for k in keys:
                by_value.setdefault(k, []).append(lc)
        elif kind == "prefix":
            by_prefix = bucket.prefix.setdefault(param, {})
            by_prefix.setdefault(keys[0], []).append(lc)
            bucket.prefix_lengths[param] = sorted({len(p) for p in by_prefix})
        else:
            bucket.scan.append(lc)

    def _unfile(self, lc: LeafClass) -> None:
        bucket = self._names.get(lc.name)
        if bucket is None:
            return
        kind, param, keys = _index_entry(lc)
        if kind == "eq":
            by_value = bucket.eq.get(param, {})
            for k in keys:
                lst = [x for x in by_value.get(k, []) if x is not lc]
                if lst:
                    by_value[k] = lst
                else:
                    by_value.pop(k, None)
            if not by_value:
                bucket.eq.pop(param, None)
        elif kind == "prefix":
            by_prefix = bucket.prefix.get(param, {})
            lst = [x for x in by_prefix.get(keys[0], []) if x is not lc]
            if lst:
                by_prefix[keys[0]] = lst
            else:
                by_prefix.pop(keys[0], None)
            if by_prefix:
                bucket.prefix_lengths[param] = sorted({len(p) for p in by_prefix})
            else:
                bucket.prefix.pop(param, None)
                bucket.prefix_lengths.pop(param, None)
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
            lst = by_value.get(value_key(v))
            if lst:
                found.extend(lst)
        for param, by_prefix in bucket.prefix.items():
            v = params.get(param)
            if v.__class__ is not str:
                continue
            n = len(v)
            for length in bucket.prefix_lengths[param]:
                if length > n:
                    break
                lst = by_prefix.get(v[:length])
                if lst:
                    found.extend(lst)
        if bucket.scan:
            found.extend(bucket.scan)
        return [lc for lc in found if lc.accepts(params)]

    def names(self) -> Iterable[str]:
        return self._names.keys()
