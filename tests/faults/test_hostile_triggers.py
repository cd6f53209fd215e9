"""Hostile trigger definitions: rejected at apply with a clear message, nothing stored,
no hang, bounded memory.

Each hand-picked file goes through the real command line (``flagman apply``) in a
child process whose wall time and peak memory are measured; the store must be left
exactly as it was. Hypothesis then throws random trees and random text at the loader:
every outcome is either a list of triggers or a ``DefinitionError``, never a crash.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults._support import MiB, db_query, report
from tests.faults.conftest import MakeDb
from tests.harness import ROOT, apply_yaml
from triggers import DefinitionError, load_text

LEAF = "{signal: s, where: {table: t}}"


def _trigger(tid: str, when: str, extra: str = "") -> str:
    return f"- id: {tid}\n  workflow: wf\n  when: {when}\n{extra}"


def billion_laughs() -> str:
    lines = ['- id: lol\n  workflow: wf\n  when: {signal: s}\n  params:\n    a0: &a0 "lol"']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"    a{i}: &a{i} [{', '.join([prev] * 10)}]")
    return "\n".join(lines) + "\n"


# (label, file text, message that must appear on stderr). Paths and ids are checked too.
CASES: list[tuple[str, str | bytes, str]] = [
    ("billion laughs", billion_laughs(), r"YAML anchors are not allowed \(&a0\)"),
    ("alias without anchor", "- id: x\n  workflow: wf\n  when: *nowhere\n", r"(aliases are not allowed|invalid YAML)"),
    ("100k nested flow lists", "- id: deep\n  workflow: wf\n  when: " + "[" * 100_000 + "]" * 100_000 + "\n",
     r"(YAML nested deeper than 64 levels|exceeded maximum nesting depth)"),
    ("200 nested block mappings", "".join("  " * i + f"k{i}:\n" for i in range(200)), r"YAML nested deeper than 64 levels"),
    ("conditions nested 40 deep", _trigger("nest", "{all: [" * 31 + LEAF + "]}" * 31),
     # Each combinator costs two YAML levels, so the YAML limit (64) trips first.
     r"(nest: when(\.all\[0\])+: conditions nested deeper than 32 levels|YAML nested deeper than 64)"),
    ("unknown operator", _trigger("ops", "{all: [" + LEAF + ", {signal: s, where: {region: {inn: [us]}}}]}"),
     r"ops: when\.all\[1\]\.where\.region: unknown operator 'inn'"),
    ("unknown combinator", _trigger("comb", "{every: [" + LEAF + "]}"), r"comb: when: .*'every'"),
    ("template missing key", _trigger("tpl", LEAF, "  join: [dt]\n  params: {run: '{nope}'}\n"),
     r"tpl: params\.run: unknown template reference '\{nope\}'"),
    ("template missing alias", _trigger("tpl2", LEAF, "  join: [dt]\n  params: {rows: '{orders.payload.rows}'}\n"),
     r"tpl2: params\.rows: .*orders"),
    ("id of 10k characters", _trigger("i" * 10_000, LEAF), r"id: expected 1-200 characters"),
    ("in-list of 100k items", _trigger("big_in", "{signal: s, where: {t: {in: [" + ", ".join(map(str, range(100_000))) + "]}}}"),
     r"big_in: when\.where\.t\.in: more than 1024 items"),
    ("300 leaves", _trigger("wide", "{all: [" + ", ".join([LEAF] * 300) + "]}"),
     r"wide: when: more than 256 signal conditions"),
    ("1 MB string", _trigger("long_str", "{signal: s, where: {t: " + "x" * 1_000_000 + "}}"),
     r"long_str: when\.where\.t: string longer than 4096 characters"),
    ("1000 join keys", _trigger("joins", LEAF, "  join: [" + ", ".join(f"k{i}" for i in range(1000)) + "]\n"),
     r"joins: join: more than 32 join keys"),
    ("10k params", _trigger("params", LEAF, "  params: {" + ", ".join(f"p{i}: {i}" for i in range(10_000)) + "}\n"),
     r"params: params: more than 256 params"),
    ("1000-digit integer", _trigger("bigint", "{signal: s, where: {n: " + "9" * 1000 + "}}"), r"integer too long"),
    ("absurd lookback", _trigger("lb", LEAF, "  lookback: 99999999999999d\n"), r"lb: lookback: "),
    ("at_least count 10^9", _trigger("al", "{at_least: {count: 1000000000, of: [" + LEAF + "]}}"),
     r"al: when\.at_least\.count: "),
    ("python object tag", "- !!python/object/apply:os.system ['touch /tmp/flagman-pwned']\n",
     r"unsupported YAML tag"),
    ("duplicate mapping key", "- id: dup\n  id: dup2\n  workflow: wf\n  when: {signal: s}\n", r"duplicate key 'id'"),
    ("duplicate trigger id", _trigger("same", LEAF) + _trigger("same", LEAF), r"same: id: duplicate trigger id"),
    ("file over 5 MiB", "# " + "x" * (5 * MiB) + "\n" + _trigger("ok", LEAF), r"file larger than 5242880 bytes"),
    ("not UTF-8", b"- id: x\n  workflow: \xff\xfe\n", r"not valid UTF-8"),
    ("20k bad triggers", "".join(_trigger(f"b{i}", "{signal: s, where: {x: {inn: [1]}}}") for i in range(20_000)),
     r"stopped after 500 problems"),
    ("valid ones and one bad", _trigger("fine1", LEAF) + _trigger("fine2", LEAF) + _trigger("bad", "{signal: 's s'}"),
     r"bad: when\.signal: "),
]

BASELINE = _trigger("baseline", LEAF)
MAX_SECONDS = 20.0
MAX_RSS_MIB = 400.0


def run_apply(db: str, path: Path) -> tuple[int, str, float, float]:
    """``flagman apply`` in a child: exit code, stderr, wall seconds, peak RSS (MiB)."""
    err_path = path.with_suffix(".stderr")
    started = time.monotonic()
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "apply", "--db", db, str(path)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=err, stderr=err,
        )
    watchdog = threading.Timer(MAX_SECONDS * 3, proc.kill)
    watchdog.start()
    try:
        # wait4, not wait: it reports this child's own peak memory.
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    assert code != -9, f"flagman apply {path.name} hung (killed after {MAX_SECONDS * 3:g}s)"
    return code, err_path.read_text(errors="replace"), seconds, usage.ru_maxrss / 1024


def run_apply_here(db: str, path: Path) -> tuple[int, str, float, float]:
    """The same command line in this process (no start-up cost); peak memory unknown."""
    import contextlib
    import io

    from runtime.cli import main

    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
        code = main(["apply", "--db", db, str(path)])
    return code, err.getvalue(), time.monotonic() - started, 0.0


# The short form runs these through a child process, the rest in-process; the long
# form runs every case in a child, measuring its peak memory.
CHILD_IN_SHORT = {"billion laughs", "in-list of 100k items", "valid ones and one bad"}


@pytest.mark.integration
@pytest.mark.parametrize("form", ["short", pytest.param("long", marks=pytest.mark.slow)])
async def test_hostile_trigger_files_rejected_nothing_stored(
    form: str, make_db: MakeDb, tmp_path: Path
) -> None:
    import asyncio

    db = await make_db("sqlite")
    await apply_yaml(db, BASELINE)
    before = await db_query(db, "SELECT id, version, revision FROM triggers ORDER BY id")
    problems, timings = [], {}
    peak = 0.0
    for label, text, message in CASES:
        path = tmp_path / (re.sub(r"\W+", "_", label) + ".yaml")
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        if form == "long" or label in CHILD_IN_SHORT:
            code, err, seconds, rss = run_apply(db, path)
        else:
            code, err, seconds, rss = await asyncio.to_thread(run_apply_here, db, path)
        timings[label] = round(seconds, 2)
        peak = max(peak, rss)
        lines = err.strip().splitlines()
        if code != 1:
            problems.append(f"{label}: exit {code}, expected 1: {err[-300:]}")
        if not re.search(message, err):
            problems.append(f"{label}: no /{message}/ in: {err[:300]}")
        if not lines or not lines[-1].endswith("nothing stored"):
            problems.append(f"{label}: last line does not say 'nothing stored': {lines[-1:]}")
        if any(not ln.startswith(("error: ", "flagman apply: ")) for ln in lines):
            problems.append(f"{label}: stray output (a traceback?): {err[:300]}")
        if any(not ln.startswith(f"error: {path}") for ln in lines[:-1]):
            problems.append(f"{label}: an error line does not start with the file name")
        if any(len(ln) > 1000 for ln in lines):
            problems.append(f"{label}: an error line over 1000 characters")
        if seconds > MAX_SECONDS:
            problems.append(f"{label}: took {seconds:.1f}s")
    after = await db_query(db, "SELECT id, version, revision FROM triggers ORDER BY id")
    report("hostile trigger files", form=form, cases=len(CASES),
           slowest=max(timings.items(), key=lambda kv: kv[1]), peak_rss_mib=round(peak, 1),
           stored_before=len(before), stored_after=len(after), problems=len(problems))
    assert not problems, "\n".join(problems)
    assert after == before, "a rejected apply changed the store"
    assert peak < MAX_RSS_MIB, f"apply used {peak:.0f} MiB"
    assert not Path("/tmp/flagman-pwned").exists()


# -- Hypothesis: random trees and text straight at the loader --------------------------

NAMES = st.sampled_from(["s", "t", "table_ready", "x y", "", "a" * 300])
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.text(max_size=12),
                   st.floats(allow_nan=True, allow_infinity=True))
OPS = st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "prefix", "exists",
                       "inn", "regex", ""])


def _cond(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.fixed_dictionaries({"all": st.lists(children, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(children, max_size=3)}),
        st.fixed_dictionaries({"at_least": st.fixed_dictionaries(
            {"count": st.one_of(st.integers(-2, 5), SCALAR), "of": st.lists(children, max_size=3)})}),
        children,
    )


LEAVES = st.fixed_dictionaries(
    {"signal": NAMES},
    optional={"where": st.dictionaries(st.text(max_size=6), st.one_of(
        SCALAR, st.dictionaries(OPS, st.one_of(SCALAR, st.lists(SCALAR, max_size=3)), max_size=2))),
        "as": st.one_of(st.text(max_size=6), SCALAR), "join_as": st.dictionaries(st.text(max_size=4), SCALAR)},
)
TRIGGERS = st.fixed_dictionaries(
    {"id": st.one_of(st.from_regex(r"[a-z]{1,8}", fullmatch=True), SCALAR),
     "workflow": st.one_of(NAMES, SCALAR),
     "when": st.recursive(LEAVES, _cond, max_leaves=12)},
    optional={"join": st.one_of(st.lists(st.text(max_size=5), max_size=3), SCALAR),
              "on_update": st.one_of(st.sampled_from(["ignore", "refire", "sometimes"]), SCALAR),
              "params": st.dictionaries(st.text(max_size=5), st.one_of(
                  SCALAR, st.text(alphabet="{}.abcdt", max_size=15))),
              "lookback": st.one_of(st.sampled_from(["7d", "0", "-1d", "1y", "99999999999d"]), SCALAR),
              "step": SCALAR, "owner": SCALAR},
)


def _yaml(obj: object) -> str:
    import json

    return json.dumps(obj, allow_nan=True)  # JSON is YAML (NaN becomes a plain scalar)


def _load(text: str) -> None:
    started = time.monotonic()
    try:
        load_text(text, "fuzz.yaml")
    except DefinitionError as exc:
        for issue in exc.issues:
            line = str(issue)
            assert "\n" not in line and line.startswith("fuzz.yaml"), line
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("examples", [pytest.param(200, id="short"),
                                      pytest.param(5000, id="long", marks=pytest.mark.slow)])
def test_random_trigger_trees_never_crash_the_loader(examples: int) -> None:
    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(TRIGGERS, min_size=1, max_size=3))
    def check(defs: list[object]) -> None:
        _load(_yaml(defs))

    check()


@pytest.mark.parametrize("examples", [pytest.param(300, id="short"),
                                      pytest.param(10000, id="long", marks=pytest.mark.slow)])
def test_random_text_never_crashes_the_loader(examples: int) -> None:
    yamlish = st.lists(st.sampled_from([*"- :{}[]&*!|>'\"#%@`,?\n\t abc019", "id", "when: ", "\u2028",
                                         "\x00", "&a ", "*a", "!!str ", "- id: x\n  workflow: w\n"]),
                       max_size=80).map("".join)

    @settings(max_examples=examples, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(yamlish)
    def check(text: str) -> None:
        _load(text)

    check()


@pytest.mark.integration
async def test_apply_errors_stay_one_line_whatever_the_keys(make_db: MakeDb, tmp_path: Path) -> None:
    """A mapping key is user input: echoed in a path, it must not break the one-line
    format (a newline in a key must not forge an output line such as 'applied: ...')."""
    import asyncio

    db = await make_db("sqlite")
    path = tmp_path / "forged.yaml"
    path.write_text('- id: forged\n  workflow: wf\n  when: {signal: s, join_as: '
                    '{"x\\napplied: 1 created, 0 updated, 0 unchanged, 0 pruned": dt}}\n')
    code, err, _, _ = await asyncio.to_thread(run_apply_here, db, path)
    lines = err.strip().splitlines()
    assert code == 1
    assert [ln for ln in lines if not ln.startswith((f"error: {path}", "flagman apply: "))] == [], err
