"""Schema migrations 3 and 4 (hot-table layout, the outbox table) from older
layouts, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from runtime.store.schema import MIGRATIONS
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
"""

# As migration 3 left them: rowid ids on SQLite, unique indexes led by a hash or a
# trigger id, ``published`` in the firing rows.
_V3_TABLES = """
CREATE TABLE signals (seq {pk}, name VARCHAR(200) NOT NULL,
  sig_id VARCHAR(256) NOT NULL, explicit_id BOOLEAN NOT NULL, source TEXT,
  time VARCHAR(40) NOT NULL, time_ms BIGINT NOT NULL, params TEXT NOT NULL, payload TEXT,
  encoding VARCHAR(32) NOT NULL, topic VARCHAR(249) NOT NULL, partition INTEGER NOT NULL,
  "offset" BIGINT NOT NULL, record_ts_ms BIGINT NOT NULL,
  CONSTRAINT uq_signals_identity UNIQUE (sig_id, name));
CREATE INDEX ix_signals_name_seq ON signals (name, seq);
CREATE TABLE hits (hid {pk}, lc_key VARCHAR(32) NOT NULL,
  tk TEXT NOT NULL, seq BIGINT NOT NULL, CONSTRAINT uq_hits UNIQUE (tk, lc_key, seq));
CREATE INDEX ix_hits_tk_hid ON hits (tk, hid);
CREATE TABLE firings (fid {pk},
  command_id VARCHAR(64) NOT NULL, trigger_id VARCHAR(200) NOT NULL,
  trigger_version INTEGER NOT NULL, tk TEXT NOT NULL, generation INTEGER NOT NULL,
  cause_seq BIGINT NOT NULL, consumed TEXT, command TEXT NOT NULL,
  workflow VARCHAR(200) NOT NULL, source_topic VARCHAR(249) NOT NULL,
  source_partition INTEGER NOT NULL, cmd_partition INTEGER NOT NULL,
  scan_from BIGINT NOT NULL, published BOOLEAN NOT NULL, created_ms BIGINT NOT NULL,
  CONSTRAINT uq_firings_firing UNIQUE (trigger_id, tk, generation));
CREATE INDEX ix_firings_tk_fid ON firings (tk, fid);
CREATE INDEX ix_firings_pending ON firings (published, source_topic, source_partition);
"""

# Firing 2 was never acknowledged by the broker, firing 1 was.
_ROWS = """
INSERT INTO signals VALUES (7, 'a', 'x', true, NULL, 't', 1, '{}', NULL, 'native', 's', 0, 5, 1);
INSERT INTO hits VALUES (3, 'lc', '["d"]', 7);
INSERT INTO firings VALUES (1, 'cid1', 'done', 1, '["d"]', 0, 7, NULL, '{"c":0}', 'wf', 's', 0,
  0, 0, true, 1);
INSERT INTO firings VALUES (2, 'cid', 'trig', 1, '["d"]', 0, 7, NULL, '{"c":1}', 'wf', 's', 1,
  0, 4, false, 1)
"""


@pytest.mark.parametrize("layout", ["v2", "v3"])
async def test_migrations_keep_rows_move_unique_indexes_and_the_outbox(
    db_url: str, layout: str
) -> None:
    store = SqlStore(db_url)
    await store.open()  # everything at the latest version; then put back the old layout
    pk = "INTEGER PRIMARY KEY" if not store.is_postgres else "BIGINT NOT NULL PRIMARY KEY"
    old = _V2_TABLES if layout == "v2" else _V3_TABLES.format(pk=pk)
    async with store.engine.begin() as conn:
        for table in ("firings", "hits", "signals", "unpublished"):
            await conn.exec_driver_sql(f"DROP TABLE {table}")
        for stmt in (old + ";" + _ROWS).split(";"):
            if stmt.strip():
                await conn.exec_driver_sql(stmt)
        await conn.execute(text("UPDATE flagman_meta SET value = :v WHERE key = 'schema_version'"),
                           {"v": layout[1]})
    await store.close()

    store = SqlStore(db_url)
    assert await store.open() == len(MIGRATIONS)
    try:
        async with store.engine.begin() as conn:
            rows = {t: (await conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY 1")).fetchall()
                    for t in ("signals", "hits", "firings", "unpublished")}
            assert rows["signals"][0][:3] == (7, "a", "x")
            assert rows["hits"] == [(3, "lc", '["d"]', 7)]
            assert [r[:3] for r in rows["firings"]] == [(1, "cid1", "done"), (2, "cid", "trig")]
            assert rows["unpublished"] == [(2, "s", 1)]
            cols = (await conn.exec_driver_sql("SELECT * FROM firings")).keys()
            assert "published" not in cols
            # one firing per (trigger, tuple, generation); the same command id again is
            # not refused by an index of its own, the (tuple, trigger, gen) one is
            with pytest.raises(Exception, match="(?i)unique"):
                await conn.exec_driver_sql(
                    "INSERT INTO firings VALUES (9, 'other', 'trig', 1, '[\"d\"]', 0, 7, NULL, "
                    "'{}', 'wf', 's', 0, 0, 0, 1)")
        async with store.engine.begin() as conn:
            with pytest.raises(Exception, match="(?i)unique"):
                await conn.exec_driver_sql("INSERT INTO hits VALUES (4, 'lc', '[\"d\"]', 7)")
        # recovery finds the unacknowledged command, on its source partition only
        pending = await store.pending("s", [1])
        assert [(p.command_id, p.command, p.scan_from, p.fid) for p in pending] == [
            ("cid", '{"c":1}', 4, 2)]
        assert await store.pending("s", [0]) == []
        await store.mark_published([2])
        assert await store.pending("s", [1]) == []
        async with store.engine.connect() as conn:
            if store.is_postgres:
                defs = dict((await conn.exec_driver_sql(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname IN ('uq_hits', 'uq_firings_firing')")).fetchall())
                assert defs == {"uq_hits": "UNIQUE (tk, seq, lc_key)",
                                "uq_firings_firing": "UNIQUE (tk, trigger_id, generation)"}
                return
            for table, pk_col in (("signals", "seq"), ("hits", "hid"), ("firings", "fid")):
                info = {r[1]: r[2] for r in
                        (await conn.exec_driver_sql(f"PRAGMA table_info({table})")).fetchall()}
                assert info[pk_col] == "INTEGER", f"{table}.{pk_col} is not the rowid"
            names = {r[0] for r in (await conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index'")).fetchall()}
            assert "ix_firings_trigger" not in names and "ix_firings_pending" not in names
            assert {"ix_signals_name_seq", "ix_hits_tk_hid", "ix_firings_tk_fid"} <= names
            for table, want in (("hits", ["tk", "seq", "lc_key"]),
                                ("firings", ["tk", "trigger_id", "generation"])):
                uniques = [r[1] for r in (await conn.exec_driver_sql(
                    f"PRAGMA index_list({table})")).fetchall() if r[2] and r[3] == "u"]
                assert len(uniques) == 1
                got = [r[2] for r in (await conn.exec_driver_sql(
                    f'PRAGMA index_info("{uniques[0]}")')).fetchall()]
                assert got == want, table
    finally:
        await store.close()


async def test_v5_moves_the_look_back_record_to_its_own_table(db_url: str) -> None:
    """Versions recorded in ``triggers.backfilled`` (schema 4) are the evaluated ones
    after the migration; later records go to ``trigger_backfill`` and only rise."""
    from runtime.apply import apply_definitions
    from tests.harness import join_defs, set_schema_version

    store = SqlStore(db_url)
    await store.open()
    await apply_definitions(store, join_defs(3))
    async with store.engine.begin() as conn:  # t001 evaluated at v1, as schema 4 kept it
        await conn.exec_driver_sql("UPDATE triggers SET backfilled = 1 WHERE id = 't001'")
    await store.close()
    await set_schema_version(db_url, 4, drop=["trigger_backfill"])

    store = SqlStore(db_url)
    assert await store.open() == len(MIGRATIONS)
    try:
        async def evaluated() -> dict[str, int]:
            return {r.id: r.backfilled for p in [p async for p in store.trigger_pages(0)]
                    for r in p}

        assert await evaluated() == {"t000": 0, "t001": 1, "t002": 0}
        assert {r.id: r.backfilled for r in await store.load_triggers()} == await evaluated()
        await store.mark_backfilled({"t000": 1, "t001": 0})
        assert await evaluated() == {"t000": 1, "t001": 1, "t002": 0}
        async with store.engine.begin() as conn:  # the wide rows were not rewritten
            got = (await conn.exec_driver_sql(
                "SELECT id, backfilled FROM triggers ORDER BY id")).fetchall()
        assert [tuple(r) for r in got] == [("t000", 0), ("t001", 1), ("t002", 0)]
    finally:
        await store.close()
