"""``flagman apply`` and settings, through the real command line, on both databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.store.sql import SqlStore
from tests.harness import ROOT, set_schema_version

pytestmark = pytest.mark.integration

V1 = """
- id: revenue.daily
  workflow: revenue
  when:
    all:
      - {signal: table_ready, where: {table: db.orders}}
      - {signal: table_ready, where: {table: db.refunds}}
  join: [dt]
- id: users.daily
  workflow: users
  when: {signal: table_ready, where: {table: db.users}}
  join: [dt]
"""


def flagman(*args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if db:
        env["FLAGMAN_DB"] = db
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=120,
    )


async def stored(db: str) -> dict[str, tuple[int, bool]]:
    store = SqlStore(db)
    await store.open()
    try:
        return {r.id: (r.version, r.active) for r in await store.load_triggers()}
    finally:
        await store.close()


async def test_apply_versions_diff_noop_and_prune(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(V1)
    r = flagman("apply", str(f), db=db_url)
    assert r.returncode == 0, r.stderr
    assert "2 created" in r.stdout and "+" in r.stdout
    assert await stored(db_url) == {"revenue.daily": (1, True), "users.daily": (1, True)}

    r = flagman("apply", str(f), db=db_url)
    assert r.returncode == 0 and "0 created, 0 updated, 2 unchanged" in r.stdout

    f.write_text(V1.replace("db.refunds", "db.refunds_v2"))
    r = flagman("apply", str(f), "--dry-run", db=db_url)
    assert r.returncode == 0 and "db.refunds_v2" in r.stdout and "dry run" in r.stdout
    assert (await stored(db_url))["revenue.daily"] == (1, True)

    r = flagman("apply", str(f), db=db_url)
    assert "1 updated" in r.stdout and "db.refunds_v2" in r.stdout
    assert (await stored(db_url))["revenue.daily"] == (2, True)

    only = tmp_path / "only.yaml"
    only.write_text(V1.split("- id: users.daily")[0])
    r = flagman("apply", str(only), db=db_url)
    assert (await stored(db_url))["users.daily"] == (1, True), "left alone without --prune"
    r = flagman("apply", str(only), "--prune", db=db_url)
    assert r.returncode == 0 and "1 pruned" in r.stdout
    assert (await stored(db_url))["users.daily"] == (2, False)


async def test_apply_rejects_bad_definitions_naming_file_trigger_and_path(
    db_url: str, tmp_path: Path
) -> None:
    good = tmp_path / "a_good.yaml"
    good.write_text(V1)
    bad = tmp_path / "b_bad.yaml"
    bad.write_text(
        """
- id: revenue.bad
  workflow: revenue
  when:
    all:
      - {signal: table_ready, where: {table: db.orders}}
      - signal: table_ready
        where:
          region: {inn: [us, eu]}
  join: [dt]
  params: {x: "{nope.rows}"}
"""
    )
    r = flagman("apply", str(tmp_path), db=db_url)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert any(
        "b_bad.yaml" in ln and "revenue.bad" in ln and "when.all[1].where.region" in ln
        and "inn" in ln for ln in lines
    ), r.stderr
    assert any("nope" in ln for ln in lines), r.stderr
    assert "nothing stored" in r.stderr
    assert await stored(db_url) == {}, "one bad file stores nothing at all"


def test_bad_setting_fails_at_startup_with_one_line(tmp_path: Path) -> None:
    r = flagman("worker", "--bootstrap", "not a host", db=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "FLAGMAN_BOOTSTRAP" in r.stderr
    r = flagman("apply", "x.yaml", db="mysql://nope")
    assert r.returncode == 2 and "FLAGMAN_DB" in r.stderr and r.stderr.strip().count("\n") == 0


def test_kafka_security_settings_fail_at_startup(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAGMAN_DB": f"sqlite+aiosqlite:///{tmp_path}/x.db"}
    for extra, needle in [
        ({"FLAGMAN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "FLAGMAN_KAFKA_SASL_MECHANISM"),
        ({"FLAGMAN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FLAGMAN_KAFKA_SASL_MECHANISM": "PLAIN"},
         "FLAGMAN_KAFKA_SASL_USERNAME"),
        ({"FLAGMAN_KAFKA_SECURITY_PROTOCOL": "SSL", "FLAGMAN_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")},
         "FLAGMAN_KAFKA_SSL"),
        ({"FLAGMAN_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, "FLAGMAN_KAFKA_SECURITY_PROTOCOL"),
    ]:
        r = subprocess.run([sys.executable, "-m", "runtime.cli", "worker"], capture_output=True,
                           text=True, env={**env, **extra}, cwd=ROOT, timeout=60)
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


async def _schema(db: str) -> tuple[str | None, set[str]]:
    """The stored schema version and the tables there, read without migrating."""
    from sqlalchemy import inspect, text

    store = SqlStore(db)
    try:
        async with store.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            version = None
            if "flagman_meta" in tables:
                version = (await conn.execute(text(
                    "SELECT value FROM flagman_meta WHERE key = 'schema_version'"))).scalar()
        return version, tables
    finally:
        await store.close()


async def test_a_dry_run_and_explain_leave_an_older_database_as_it_was(
    db_url: str, tmp_path: Path,
) -> None:
    """Commands that only read do not migrate: a dry run migrates inside the transaction
    it rolls back and still shows the diff; ``explain`` refuses an older schema in one
    line that says what migrates it."""
    from runtime.store.schema import MIGRATIONS

    f = tmp_path / "t.yaml"
    f.write_text(V1)
    assert flagman("apply", str(f), db=db_url).returncode == 0
    await set_schema_version(db_url, 4, drop=["trigger_backfill"])
    version, tables = await _schema(db_url)
    assert version == "4" and "trigger_backfill" not in tables

    f.write_text(V1.replace("db.refunds", "db.refunds_v2"))
    r = flagman("apply", str(f), "--dry-run", db=db_url)
    assert r.returncode == 0, r.stderr
    assert "db.refunds_v2" in r.stdout and "dry run: would apply: 0 created, 1 updated" in r.stdout
    version, tables = await _schema(db_url)
    assert version == "4" and "trigger_backfill" not in tables

    r = flagman("explain", "revenue.daily", "dt=d1", db=db_url)
    assert r.returncode == 1 and r.stdout == ""
    [line] = r.stderr.splitlines()
    assert f"schema v4, this flagman reads v{len(MIGRATIONS)}" in line
    assert "`flagman apply` or a worker of this version migrates it" in line
    assert (await _schema(db_url))[0] == "4"

    r = flagman("apply", str(f), db=db_url)  # not a dry run: migrates, then applies
    assert r.returncode == 0 and "1 updated" in r.stdout
    version, tables = await _schema(db_url)
    assert version == str(len(MIGRATIONS)) and "trigger_backfill" in tables
    assert flagman("explain", "revenue.daily", "dt=d1", db=db_url).returncode == 0


async def test_a_dry_run_on_an_empty_database_creates_nothing(db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(V1)
    r = flagman("apply", str(f), "--dry-run", db=db_url)
    assert r.returncode == 0 and "dry run: would apply: 2 created" in r.stdout, r.stderr
    assert await _schema(db_url) == (None, set())
    r = flagman("explain", "revenue.daily", "dt=d1", db=db_url)
    assert r.returncode == 1 and "has no flagman schema (nothing applied yet)" in r.stderr
    assert await _schema(db_url) == (None, set())


async def test_a_schema_newer_than_this_flagman_is_refused_in_one_line(
    db_url: str, tmp_path: Path,
) -> None:
    """A database a newer flagman migrated: workers, apply, dry runs and explain all
    stop with one line instead of running statements that may not fit it."""
    from runtime.store.base import StoreError
    from runtime.store.schema import MIGRATIONS

    f = tmp_path / "t.yaml"
    f.write_text(V1)
    assert flagman("apply", str(f), db=db_url).returncode == 0
    newer = len(MIGRATIONS) + 1
    await set_schema_version(db_url, newer)

    want = f"schema v{newer} is newer than this flagman's v{len(MIGRATIONS)}"
    for args in (["apply", str(f)], ["apply", str(f), "--dry-run"],
                 ["explain", "revenue.daily", "dt=d1"]):
        r = flagman(*args, db=db_url)
        assert r.returncode == 1 and r.stdout == "", args
        [line] = r.stderr.splitlines()
        assert want in line and "run the flagman that migrated it" in line, args
    store = SqlStore(db_url)
    try:
        with pytest.raises(StoreError, match=want) as got:
            await store.open()
        assert not got.value.transient  # a worker stops at once rather than retrying
    finally:
        await store.close()
    assert (await _schema(db_url))[0] == str(newer)
