"""``flagman explain``: why has a trigger (not) fired for a join tuple?

Reads the store only: the trigger's current definition, the hits of its leaf classes
for the tuple, the firings, and, for leaves without a hit, recent signals of the
leaf's name that pass its ``where`` but lack a join param (those never contribute).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text

from triggers import (
    NO_JOIN,
    CompiledLeaf,
    CompiledTrigger,
    LeafClassRegistry,
    compile_trigger,
    tuple_key,
)

from .store.sql import SqlStore


def scalar(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def params_text(params: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in params.items()) + "}"


def join_text(join: Mapping[str, Any] | None) -> str:
    if not join:
        return "(no join)"
    return "for " + ", ".join(f"{k}={scalar(v)}" for k, v in join.items())


_OPS = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
        "in": " in ", "not_in": " not in ", "prefix": " prefix "}


def leaf_name(leaf: CompiledLeaf) -> str:
    """The alias, or the signal name with its ``where``."""
    if leaf.alias:
        return leaf.alias
    conds = []
    for param, ops in leaf.lc.where.items():
        for op, bound in ops.items():
            if op == "exists":
                conds.append(param if bound else f"no {param}")
            else:
                conds.append(f"{param}{_OPS[op]}{scalar(bound)}")
    return f"{leaf.lc.name}({', '.join(conds)})" if conds else leaf.lc.name


def missing(node: tuple[Any, ...], mask: int, trig: CompiledTrigger, top: bool = True) -> str:
    """What the condition still needs, given the satisfied leaves; "" when satisfied."""
    if trig.satisfied(mask) and top:
        return ""
    tag = node[0]
    if tag == "leaf":
        return "" if mask >> node[1] & 1 else leaf_name(trig.leaves[node[1]])
    kids = node[2] if tag == "atl" else node[1]
    parts = [p for p in (missing(c, mask, trig, False) for c in kids) if p]
    if tag == "all":
        text = " and ".join(parts)
    elif tag == "any":
        if len(parts) < len(kids):
            return ""
        text = " or ".join(parts)
    else:
        done = len(kids) - len(parts)
        if done >= node[1]:
            return ""
        return f"{node[1] - done} more of ({', '.join(parts)})"
    return text if top or len(parts) == 1 else f"({text})"


async def explain(store: SqlStore, trigger_id: str, join: Mapping[str, Any]) -> list[str]:
    """Human-readable lines explaining one trigger for one tuple (``join`` maps each
    join key to its value; ignored for triggers without join)."""
    rows = [r for r in await store.load_triggers(0) if r.id == trigger_id]
    if not rows or not rows[-1].active:
        return [f"trigger {trigger_id}: not applied (or pruned)"]
    row = rows[-1]
    trig = compile_trigger(row.definition, row.version, LeafClassRegistry())
    if trig.join:
        missing_keys = [k for k in trig.join if k not in join]
        if missing_keys:
            return [f"trigger {trigger_id} joins on {list(trig.join)}: give "
                    + " ".join(f"{k}=VALUE" for k in missing_keys)]
        values: tuple[Any, ...] | None = tuple(join[k] for k in trig.join)
        tk = tuple_key(values)
    else:
        values, tk = None, NO_JOIN
    head = (f"trigger {trig.id} v{trig.version} -> workflow {trig.workflow}"
            + (f", step {trig.step}" if trig.step else "")
            + f" {join_text(trig.join_object(values))}")
    async with store.engine.connect() as conn:
        hits = (await conn.execute(
            text("SELECT lc_key, max(seq) FROM hits WHERE tk = :tk GROUP BY lc_key"), {"tk": tk}
        )).fetchall()
        fired = (await conn.execute(
            text("SELECT generation, command_id, command FROM firings "
                 "WHERE trigger_id = :t AND tk = :tk ORDER BY generation"),
            {"t": trig.id, "tk": tk},
        )).fetchall()
        latest = {k: s for k, s in hits if s >= trig.min_seq}
        lines = [head]
        mask = 0
        for leaf in trig.leaves:
            seq = latest.get(leaf.lc.key)
            if seq is not None:
                mask |= 1 << leaf.index
                sig = (await conn.execute(
                    text('SELECT sig_id, topic, partition, "offset", time FROM signals '
                         "WHERE seq = :s"), {"s": seq})).first()
                where = f"{sig[1]}/{sig[2]}@{sig[3]}, {sig[4]}" if sig else f"seq {seq}"
                lines.append(f"  ✓ {leaf_name(leaf)}: {sig[0] if sig else '?'} ({where})")
            else:
                lines.append(f"  ✗ {leaf_name(leaf)}: no matching signal {join_text(trig.join_object(values))}")
                lines += await _lacking_join(conn, trig, leaf)
    if fired:
        for gen, cid, cmd in fired:
            issued = json.loads(cmd).get("issued_at", "?")
            lines.append(f"  fired generation {gen}: command {cid} at {issued}")
        if not trig.refire and trig.join:
            lines.append("  on_update: ignore, later signals are recorded and issue nothing")
    else:
        need = missing(trig.tree, mask, trig)
        lines.append(f"  waiting: needs {need}" if need else
                     "  satisfied but not fired yet: the worker has not processed it (is it running?)")
    return lines


async def _lacking_join(conn: Any, trig: CompiledTrigger, leaf: CompiledLeaf) -> list[str]:
    """A note when recent signals pass the leaf's ``where`` but lack a join param."""
    if not leaf.lc.join_src:
        return []
    rows = (await conn.execute(
        text("SELECT params FROM signals WHERE name = :n ORDER BY seq DESC LIMIT 1000"),
        {"n": leaf.lc.name},
    )).fetchall()
    lacking: dict[str, int] = {}
    for (raw,) in rows:
        params = json.loads(raw)
        if leaf.lc.accepts(params):
            for src in leaf.lc.join_src:
                if src not in params:
                    lacking[src] = lacking.get(src, 0) + 1
    return [f"      note: {n} recent {leaf.lc.name} signal(s) match but lack the join param "
            f"'{src}', so they never contribute" for src, n in lacking.items()]
