"""``flagman demo``: the scripted story runs end to end and says what fired and why."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.demo import _missing
from triggers import LeafClassRegistry, compile_trigger
from triggers._load import load_paths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_output() -> str:
    # A clean environment: the demo must not depend on the caller's FLAGMAN_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGMAN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "demo"],
        cwd=ROOT, env=env, capture_output=True, timeout=120,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-4000:] + proc.stderr.decode(errors="replace")[-4000:]
    return out


@pytest.mark.integration
def test_demo_tells_what_fired_and_why(demo_output: str) -> None:
    out = demo_output
    assert re.search(
        r"^✓ fired revenue\.daily\.aggregate for dt=2026-11-25 \(command [0-9a-f]{12}…\): "
        r"because orders=orders-2026-11-25-us, refunds=refunds-2026-11-25-eu, "
        r"fx_feed=fx_rates-2026-11-25$",
        out, re.M,
    )
    # join_as: the manual override carries the day as `date`
    assert "fx_manual=fx-override-2026-11-26" in out
    assert "… still waiting: revenue.daily.publish for dt=2026-11-25, region=us needs items" in out
    assert "… still waiting: refunds.audit.daily for dt=2026-11-25 needs 1 more of (eu, apac)" in out


@pytest.mark.integration
def test_demo_shows_duplicates_dead_letters_refire_and_no_join(demo_output: str) -> None:
    out = demo_output
    assert "= duplicate of table_ready/orders-2026-11-25-us: counted and logged, nothing fires" in out
    assert re.search(
        r"^✗ dead-lettered to flagman\.dlq \(from flagman\.signals/\d+@\d+, .*\): "
        r"flagman-error: params\.region: ",
        out, re.M,
    )
    assert re.search(
        r"^✓ fired revenue\.daily\.publish for dt=2026-11-25, region=us \(generation 1, ", out, re.M
    )
    assert "items=order_items-2026-11-25-us-r2" in out
    assert "✓ fired ml.churn.score without join (generation 0, " in out
    assert "✓ fired ml.churn.score without join (generation 1, " in out
    assert "· no trigger listens for this signal" in out
    assert "orders.quality.validate for dt=2026-11-25, region=us already fired; on_update: ignore" in out


@pytest.mark.integration
def test_demo_summary_counts_every_record_once(demo_output: str) -> None:
    out = demo_output
    counts = dict(re.findall(r"^  (signals|duplicates|dead-lettered|commands) +(\d+)$", out, re.M))
    assert counts == {"signals": "13", "duplicates": "1", "dead-lettered": "1", "commands": "12"}
    assert "12 commands on flagman.commands, 12 distinct command_ids" in out
    assert not re.search(r"^!", out, re.M)  # no step disagreed with the script
    assert "the worker stopped cleanly" in out


def test_missing_names_what_a_condition_still_needs() -> None:
    defs = {d.id: d for d in load_paths([ROOT / "examples" / "warehouse.yaml"])}
    registry = LeafClassRegistry()
    agg = compile_trigger(defs["revenue.daily.aggregate"].canonical(), 1, registry)
    audit = compile_trigger(defs["refunds.audit.daily"].canonical(), 1, registry)
    user = compile_trigger(defs["user_growth.daily"].canonical(), 1, registry)

    assert _missing(agg.tree, 0, agg) == "orders and refunds and (fx_feed or fx_manual)"
    assert _missing(agg.tree, 0b0011, agg) == "(fx_feed or fx_manual)"
    assert _missing(agg.tree, 0b1011, agg) == ""
    assert _missing(audit.tree, 0b001, audit) == "1 more of (eu, apac)"
    assert _missing(user.tree, 0b10, user) == "table_ready(table=db.users)"
