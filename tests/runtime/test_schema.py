"""Schema migration 3 (hot-table indexes) from a version-2 database, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from runtime.store.sql import SqlStore

pytestmark = pytest.mark.integration

# The hot tables as migrations 1-2 created them (ids BIGINT, the old unique indexes).
_V2_TABLES = """
CREATE TABLE signals (seq BIGINT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL,
  sig_id VARCHAR(256) NOT NULL, explicit_id BOOLEAN NOT NULL, source TEXT,
  time VARCHAR(40) NOT NULL, time_ms BIGINT NOT NULL, params TEXT NOT NULL, payload TEXT,
  encoding VARCHAR(32) NOT NULL, topic VARCHAR(249) NOT NULL, partition INTEGER NOT NULL,
  "offset" BIGINT NOT NULL, record_ts_ms BIGINT NOT NULL,
  CONSTRAINT uq_signals_identity UNIQUE (sig_id, name));
CREATE INDEX ix_signals_name_seq ON signals (name, seq);
CREATE TABLE hits (hid BIGINT NOT NULL PRIMARY KEY, lc_key VARCHAR(32) NOT NULL,
  tk TEXT NOT NULL, seq BIGINT NOT NULL, CONSTRAINT uq_hits UNIQUE (lc_key, tk, seq));
CREATE INDEX ix_hits_tk_hid ON hits (tk, hid);
CREATE TABLE firings (fid BIGINT NOT NULL PRIMARY KEY,
  command_id VARCHAR(64) NOT NULL UNIQUE, trigger_id VARCHAR(200) NOT NULL,
  trigger_version INTEGER NOT NULL, tk TEXT NOT NULL, generation INTEGER NOT NULL,
  cause_seq BIGINT NOT NULL, consumed TEXT, command TEXT NOT NULL,
  workflow VARCHAR(200) NOT NULL, source_topic VARCHAR(249) NOT NULL,
  source_partition INTEGER NOT NULL, cmd_partition INTEGER NOT NULL,
  scan_from BIGINT NOT NULL, published BOOLEAN NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX ix_firings_trigger ON firings (trigger_id, tk);
INSERT INTO signals VALUES (7, 'a', 'x', true, NULL, 't', 1, '{}', NULL, 'native', 's', 0, 5, 1);
INSERT INTO hits VALUES (3, 'lc', '["d"]', 7);
INSERT INTO firings VALUES (2, 'cid', 'trig', 1, '["d"]', 0, 7, NULL, '{"c":1}', 'wf', 's', 0,
  0, 0, false, 1)
"""


async def test_migration_3_keeps_rows_and_moves_the_unique_indexes(db_url: str) -> None:
    store = SqlStore(db_url)
    await store.open()  # everything at the latest version; then put back the v2 layout
    async with store.engine.begin() as conn:
        for table in ("firings", "hits", "signals"):
            await conn.exec_driver_sql(f"DROP TABLE {table}")
        for stmt in _V2_TABLES.split(";"):
            await conn.exec_driver_sql(stmt)
        await conn.execute(text("UPDATE flagman_meta SET value = '2' WHERE key = 'schema_version'"))
    await store.close()

    store = SqlStore(db_url)
    assert await store.open() == 3
    try:
        async with store.engine.begin() as conn:
            rows = {t: (await conn.exec_driver_sql(f"SELECT * FROM {t}")).fetchall()
                    for t in ("signals", "hits", "firings")}
            assert rows["signals"][0][:3] == (7, "a", "x")
            assert rows["hits"] == [(3, "lc", '["d"]', 7)]
            assert rows["firings"][0][:3] == (2, "cid", "trig")
            # one firing per (trigger, tuple, generation); the same command id again is
            # no longer refused by an index of its own, the (trigger, tuple, gen) one is
            with pytest.raises(Exception, match="(?i)unique"):
                await conn.exec_driver_sql(
                    "INSERT INTO firings VALUES (9, 'other', 'trig', 1, '[\"d\"]', 0, 7, NULL, "
                    "'{}', 'wf', 's', 0, 0, 0, false, 1)")
        async with store.engine.begin() as conn:
            with pytest.raises(Exception, match="(?i)unique"):
                await conn.exec_driver_sql("INSERT INTO hits VALUES (4, 'lc', '[\"d\"]', 7)")
        if not store.is_postgres:
            async with store.engine.connect() as conn:
                for table, pk in (("signals", "seq"), ("hits", "hid"), ("firings", "fid")):
                    info = {r[1]: r[2] for r in
                            (await conn.exec_driver_sql(f"PRAGMA table_info({table})")).fetchall()}
                    assert info[pk] == "INTEGER", f"{table}.{pk} is not the rowid"
                names = {r[0] for r in (await conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'index'")).fetchall()}
                assert "ix_firings_trigger" not in names
                assert {"ix_signals_name_seq", "ix_hits_tk_hid", "ix_firings_tk_fid"} <= names
    finally:
        await store.close()
