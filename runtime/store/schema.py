"""The database schema and its migrations (SQLAlchemy Core, SQLite and PostgreSQL).

Migrations are an ordered list; ``meta.schema_version`` says how many have run. Each
step runs in its own transaction, under an advisory lock on PostgreSQL so that workers
starting together do not race. New steps are appended, never edited.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Connection

from triggers import compact_form

metadata = MetaData()

# Ids are given by the worker (counters, or PostgreSQL sequences). On SQLite an
# INTEGER primary key is the table's rowid: one b-tree fewer to write per row.
_ID = BigInteger().with_variant(Integer, "sqlite")

meta = Table(
    "flagman_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

signals = Table(
    "signals",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("sig_id", String(256), nullable=False),
    Column("explicit_id", Boolean, nullable=False),
    Column("source", Text),
    Column("time", String(40), nullable=False),
    Column("time_ms", BigInteger, nullable=False),
    Column("params", Text, nullable=False),
    Column("payload", Text),
    Column("encoding", String(32), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("record_ts_ms", BigInteger, nullable=False),
    UniqueConstraint("sig_id", "name", name="uq_signals_identity"),
)
Index("ix_signals_name_seq", signals.c.name, signals.c.seq)
Index("ix_signals_record_ts", signals.c.record_ts_ms)
Index("ix_signals_position", signals.c.topic, signals.c.partition, signals.c.offset)

hits = Table(
    "hits",
    metadata,
    Column("hid", _ID, primary_key=True, autoincrement=False),
    Column("lc_key", String(32), nullable=False),
    Column("tk", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    # seq grows: a batch's hits append to its tuples' ranges (see _v4)
    UniqueConstraint("tk", "seq", "lc_key", name="uq_hits"),
)
Index("ix_hits_tk_hid", hits.c.tk, hits.c.hid)

firings = Table(
    "firings",
    metadata,
    Column("fid", _ID, primary_key=True, autoincrement=False),
    Column("command_id", String(64), nullable=False),
    Column("trigger_id", String(200), nullable=False),
    Column("trigger_version", Integer, nullable=False),
    Column("tk", Text, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("cause_seq", BigInteger, nullable=False),
    Column("consumed", Text),
    Column("command", Text, nullable=False),
    Column("workflow", String(200), nullable=False),
    Column("source_topic", String(249), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("cmd_partition", Integer, nullable=False),
    Column("scan_from", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    # one firing per (trigger, tuple, generation): the same as one per command_id,
    # which is a hash of them; led by the tuple, so that a batch's firings land in
    # its tuples' ranges rather than all over the index (see _v4)
    UniqueConstraint("tk", "trigger_id", "generation", name="uq_firings_firing"),
)
Index("ix_firings_tk_fid", firings.c.tk, firings.c.fid)

# The outbox: firings stored but not known to be on the command topic. A row is
# inserted with its firing and deleted once the broker acknowledged the command, so
# the table holds only what is in flight (or left over by a crash, for recovery).
unpublished = Table(
    "unpublished",
    metadata,
    Column("fid", _ID, primary_key=True, autoincrement=False),
    Column("source_topic", String(249), nullable=False),
    Column("source_partition", Integer, nullable=False),
)

triggers = Table(
    "triggers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("definition", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("applied_ms", BigInteger, nullable=False),
    Column("min_seq", BigInteger, nullable=False),
    Column("backfilled", Integer, nullable=False, default=0),
    Column("compiled", Text),
)
Index("ix_triggers_revision", triggers.c.revision)

# Per trigger, the highest version whose look-back over stored signals was evaluated
# (schema 5). ``triggers.backfilled`` held it before and is no longer read: recording
# it there rewrote every wide trigger row (definition and compiled form) at a first
# start. On SQLite without rowid: the id is the key.
trigger_backfill = Table(
    "trigger_backfill",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    sqlite_with_rowid=False,
)

trigger_versions = Table(
    "trigger_versions",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("definition", Text),
    Column("action", String(16), nullable=False),
    Column("applied_ms", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("error", Text, nullable=False),
    Column("record_ts_ms", BigInteger, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)
    for name in ("seq", "hid", "fid", "revision"):
        conn.execute(text("INSERT INTO counters (name, value) VALUES (:n, 0)"), {"n": name})
    if conn.dialect.name == "postgresql":
        for name in ("seq", "hid", "fid"):
            conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS flagman_{name}"))


def _v2(conn: Connection) -> None:
    """``triggers.compiled``: each definition's compact form, which workers load without
    decoding or hashing (see ``triggers.compact_form``); filled in for stored rows."""
    if "compiled" not in {c["name"] for c in inspect(conn).get_columns("triggers")}:
        conn.execute(text("ALTER TABLE triggers ADD COLUMN compiled TEXT"))
    rows = conn.execute(text("SELECT id, definition FROM triggers WHERE compiled IS NULL")).fetchall()
    for i in range(0, len(rows), 5000):
        conn.execute(
            text("UPDATE triggers SET compiled = :c WHERE id = :i"),
            [{"c": compact_form(json.loads(d)), "i": tid} for tid, d in rows[i : i + 5000]],
        )


def _v3(conn: Connection) -> None:
    """Fewer and more local index writes on the hot tables (signals, hits, firings).

    * SQLite: ``seq``/``hid``/``fid`` become rowid aliases (tables rebuilt);
    * ``uq_hits`` leads with the tuple key, so a batch's hits land in few pages
      instead of at random (the leaf-class key is a hash);
    * firings: one unique index on (trigger, tuple, generation) replaces the unique
      command_id (random hex) and the (trigger, tuple) index.

    Measured at 20k triggers, 250k records: the store's time per batch grew 3x over
    the run before, as random inserts dirtied ever more pages.
    """
    if conn.dialect.name == "sqlite":
        for table in (signals, hits, firings):
            kinds = {r[1]: r[2] for r in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")}
            pk = next(c.name for c in table.primary_key.columns)
            if kinds.get(pk, "").upper() != "INTEGER":
                _rebuild_sqlite(conn, table)
        return
    _pg_unique(conn, "hits", "uq_hits", "tk, lc_key, seq")
    conn.execute(text("ALTER TABLE firings DROP CONSTRAINT IF EXISTS firings_command_id_key"))
    conn.execute(text("DROP INDEX IF EXISTS ix_firings_trigger"))
    _pg_unique(conn, "firings", "uq_firings_firing", "trigger_id, tk, generation")


def _pg_unique(conn: Connection, table: str, name: str, columns: str) -> None:
    """(Re)create a PostgreSQL unique constraint on these columns."""
    conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"))
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({columns})"))


def _v4(conn: Connection) -> None:
    """Fewer bytes written per firing and per hit.

    * The outbox gets its own table, ``unpublished``: marking a command published
      deletes a row of three small columns instead of rewriting its firing (about
      900 bytes, the command text), and ``firings.published`` and its index go.
    * ``uq_hits`` becomes (tk, seq, lc_key) and ``uq_firings_firing`` (tk, trigger_id,
      generation). Led by the tuple, then by a growing or batch-local column, a
      batch's rows land in a few pages per tuple; led by a hash or a trigger id they
      landed all over the index, and every commit wrote thousands of 4 KiB pages.

    Measured in process (100k triggers, 620k records, SQLite): see docs/benchmarks.md.
    """
    unpublished.create(conn, checkfirst=True)
    firing_cols = {c["name"] for c in inspect(conn).get_columns("firings")}
    if conn.dialect.name == "sqlite":
        if _sqlite_unique(conn, "hits") != ["tk", "seq", "lc_key"]:
            _rebuild_sqlite(conn, hits, "v4")
        if ("published" in firing_cols
                or _sqlite_unique(conn, "firings") != ["tk", "trigger_id", "generation"]):
            _rebuild_sqlite(conn, firings, "v4")
        return
    if "published" in firing_cols:
        conn.execute(text(
            "INSERT INTO unpublished (fid, source_topic, source_partition) "
            "SELECT fid, source_topic, source_partition FROM firings WHERE NOT published "
            "ON CONFLICT DO NOTHING"))
        conn.execute(text("DROP INDEX IF EXISTS ix_firings_pending"))
        conn.execute(text("ALTER TABLE firings DROP COLUMN published"))
    _pg_unique(conn, "hits", "uq_hits", "tk, seq, lc_key")
    _pg_unique(conn, "firings", "uq_firings_firing", "tk, trigger_id, generation")


def _v5(conn: Connection) -> None:
    """The look-back record gets its own narrow table, ``trigger_backfill``.

    At a first start after applying 100k triggers, ``UPDATE triggers SET backfilled``
    rewrote all 100k rows (~800 bytes of definition and compiled form each): 0.9-1.1 s
    of start-up, against 0.16 s to write the narrow rows (and 0.07 s more to read
    them back with the triggers at a restart).
    """
    trigger_backfill.create(conn, checkfirst=True)
    conn.execute(text(
        "INSERT INTO trigger_backfill (id, version) "
        "SELECT id, backfilled FROM triggers WHERE backfilled > 0 ON CONFLICT DO NOTHING"))


def _sqlite_unique(conn: Connection, table: str) -> list[str]:
    """The columns of a SQLite table's UNIQUE constraint (its one, in this schema)."""
    for row in conn.exec_driver_sql(f'PRAGMA index_list("{table}")').fetchall():
        if row[2] and row[3] == "u":
            return [r[2] for r in conn.exec_driver_sql(f'PRAGMA index_info("{row[1]}")')]
    return []


def _rebuild_sqlite(conn: Connection, table: Table, step: str = "v3") -> None:
    """Recreate ``table`` as the metadata describes it, keeping its rows.

    A firings table with the ``published`` column of schema versions before 4 leaves
    its unpublished rows in the ``unpublished`` table.
    """
    old = f"{table.name}_before_{step}"
    names = [r[0] for r in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table.name,))]
    for name in names:  # explicit indexes keep their names across a rename
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" RENAME TO "{old}"')
    table.create(conn)
    cols = ", ".join(f'"{c.name}"' for c in table.columns)
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{old}"')
    old_cols = {r[1] for r in conn.exec_driver_sql(f'PRAGMA table_info("{old}")')}
    if table is firings and "published" in old_cols:
        unpublished.create(conn, checkfirst=True)
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO unpublished (fid, source_topic, source_partition) "
            f'SELECT fid, source_topic, source_partition FROM "{old}" WHERE NOT published')
    conn.exec_driver_sql(f'DROP TABLE "{old}"')


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5]


_VERSION = text("SELECT value FROM flagman_meta WHERE key = 'schema_version'")


class SchemaMismatch(Exception):
    """The database's schema is not this flagman's: none yet (``version`` 0), older (a
    command that only reads does not migrate it) or newer (a newer flagman migrated it,
    and this one's statements may not fit: migration 4 removed a column that earlier
    workers write). The message says what to do."""

    def __init__(self, version: int) -> None:
        ours = len(MIGRATIONS)
        if version == 0:
            what = "has no flagman schema (nothing applied yet)"
        elif version < ours:
            what = (f"schema v{version}, this flagman reads v{ours}: `flagman apply` or a "
                    "worker of this version migrates it")
        else:
            what = (f"schema v{version} is newer than this flagman's v{ours}: run the "
                    "flagman that migrated it")
        super().__init__(what)
        self.version = version


def check_version(conn: Connection) -> int:
    """The schema version, without changing anything; ``SchemaMismatch`` unless it is
    this flagman's."""
    version = 0
    if inspect(conn).has_table("flagman_meta"):
        row = conn.execute(_VERSION).first()
        version = int(row[0]) if row else 0
    if version != len(MIGRATIONS):
        raise SchemaMismatch(version)
    return version


def migrate(conn: Connection) -> int:
    """Run pending migrations on a connection inside a transaction; return the version."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7243001)"))
    meta.create(conn, checkfirst=True)
    row = conn.execute(_VERSION).first()
    current = int(row[0]) if row else 0
    if current > len(MIGRATIONS):
        raise SchemaMismatch(current)
    for step in MIGRATIONS[current:]:
        step(conn)
        current += 1
    if row is None:
        conn.execute(
            text("INSERT INTO flagman_meta (key, value) VALUES ('schema_version', :v)"),
            {"v": str(current)},
        )
    else:
        conn.execute(
            text("UPDATE flagman_meta SET value = :v WHERE key = 'schema_version'"),
            {"v": str(current)},
        )
    return current
