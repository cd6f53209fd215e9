"""PostgreSQL plans of the batch statements that a bad plan turns from a lookup into a
scan: they must stay index ranges on a table of realistic shape, with the generic plan
asyncpg's prepared statements switch to after five runs."""

from __future__ import annotations

import pytest

from runtime.store.sql import PG_REFRESH_FIRINGS, PG_REFRESH_HITS, SqlStore

pytestmark = pytest.mark.integration

# Join tuples are days: a few distinct values over many rows, the shape that made a
# plain join hash a full scan.
_FILL = """
INSERT INTO hits (hid, lc_key, tk, seq)
SELECT g, md5(g::text), '["2026-11-0' || (g % 7) || '"]', g FROM generate_series(1, 60000) g;
INSERT INTO firings (fid, command_id, trigger_id, trigger_version, tk, generation, cause_seq,
  consumed, command, workflow, source_topic, source_partition, cmd_partition, scan_from,
  created_ms)
SELECT g, md5(g::text), 't' || g, 1, '["2026-11-0' || (g % 7) || '"]', 0, g, NULL, '{}', 'wf',
  's', 0, 0, 0, 0 FROM generate_series(1, 60000) g;
ANALYZE hits;
ANALYZE firings
"""


@pytest.mark.parametrize(("sql", "index"), [(PG_REFRESH_HITS, "ix_hits_tk_hid"),
                                            (PG_REFRESH_FIRINGS, "ix_firings_tk_fid")])
async def test_refresh_is_an_index_range_per_tuple_under_a_generic_plan(
    pg_url: str, sql: str, index: str
) -> None:
    store = SqlStore(pg_url)
    await store.open()
    try:
        async with store.engine.connect() as conn:
            for stmt in _FILL.split(";"):
                await conn.exec_driver_sql(stmt)
            await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            await conn.exec_driver_sql(f"PREPARE refresh(text[], bigint[]) AS {sql}")
            plan = "\n".join(r[0] for r in (await conn.exec_driver_sql(
                "EXPLAIN EXECUTE refresh(ARRAY['[\"2026-11-03\"]', '[\"2026-11-04\"]'], "
                "ARRAY[59000, 59000]::bigint[])")).fetchall())
            await conn.rollback()
    finally:
        await store.close()
    assert index in plan, plan
    assert "Seq Scan" not in plan and "Hash" not in plan, plan
