"""The benchmark's generator: deterministic, and its referee agrees with the matcher."""

from __future__ import annotations

import pytest

from bench.workload import Workload, WorkloadConfig, command_id, landed_of
from signals import SignalError, parse_record
from triggers import Matcher, MatchState, compile_trigger
from triggers import command_id as flagman_command_id
from triggers._spec import TriggerDef

SMALL = WorkloadConfig(triggers=400, tables=200, days=4, seed=3)


def test_same_seed_same_workload() -> None:
    a, b = Workload(SMALL), Workload(SMALL)
    ra, rb = a.records(range(SMALL.days)), b.records(range(SMALL.days))
    assert [r.value for r in ra] == [r.value for r in rb]
    assert list(a.definitions()) == list(b.definitions())
    assert a.expected(landed_of(ra)) == b.expected(landed_of(rb))


def test_another_seed_another_workload() -> None:
    other = Workload(WorkloadConfig(triggers=400, tables=200, days=4, seed=4))
    assert list(Workload(SMALL).definitions()) != list(other.definitions())


def test_shares_of_the_stream() -> None:
    wl = Workload(WorkloadConfig(triggers=10, tables=2000, days=2, seed=1))
    recs = wl.records(range(2))
    unique = {r.sig_id for r in recs if r.sig_id}
    bad = [r for r in recs if r.table < 0]
    dups = len(recs) - len(unique) - len(bad)
    assert len(unique) == round(2000 * 0.98) * 2
    assert 0.04 < dups / len(unique) < 0.06
    assert 0.004 < len(bad) / len(recs) < 0.006


def test_definitions_are_valid_and_varied() -> None:
    wl = Workload(SMALL)
    shapes = {s.shape for s in wl.specs()}
    assert shapes == {"leaf", "all", "any", "at_least"}
    ops = set()
    for d in wl.definitions():
        assert TriggerDef.from_canonical(d).canonical() == d
        ops |= {op for w in _wheres(d["when"]) for pred in w.values() for op in pred}
    assert ops == {"eq", "in", "prefix"}


def _wheres(node: dict) -> list[dict]:
    if "signal" in node:
        return [node["where"]]
    kids = node.get("all") or node.get("any") or node["at_least"]["of"]
    return [w for k in kids for w in _wheres(k)]


def test_records_parse_or_are_rejected_as_intended() -> None:
    wl = Workload(SMALL)
    for r in wl.records(range(2)):
        if r.table < 0:
            with pytest.raises(SignalError):
                parse_record(r.value, [], 0)
        else:
            sig = parse_record(r.value, [], 0)
            assert (sig.name, sig.id) == ("table_ready", r.sig_id)


def test_command_id_matches_flagman() -> None:
    for tid, join, gen in [("bench.job0000001", {"dt": "2026-11-01"}, 0), ("x y", {"dt": "é"}, 2),
                           ("t", None, 5), ("t", {"dt": 7}, 0)]:
        assert command_id(tid, join, gen) == flagman_command_id(tid, join, gen)


def test_expected_set_agrees_with_the_matcher() -> None:
    """The referee and flagman's pure matcher, on the same stream, fire the same commands."""
    wl = Workload(SMALL)
    records = wl.records(range(SMALL.days))
    m = Matcher()
    for d in wl.definitions():
        m.index.install(compile_trigger(d, 1, m.index.registry))
    seen: set[str] = set()
    batch = []
    for r in records:
        if r.table >= 0 and r.sig_id not in seen:
            seen.add(r.sig_id)
            batch.append(("table_ready", {"table": wl.table(r.table), "dt": wl.dt(r.day)}))
    fx = m.apply(MatchState(), m.plan(batch), range(1, len(batch) + 1))
    fired = [f.command_id for f in fx.firings]
    assert len(fired) == len(set(fired))
    assert set(fired) == wl.expected(landed_of(records))
