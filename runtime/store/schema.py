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

meta = Table(
    "flagman_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

signals = Table(
    "signals",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
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
    Column("hid", BigInteger, primary_key=True, autoincrement=False),
    Column("lc_key", String(32), nullable=False),
    Column("tk", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    UniqueConstraint("lc_key", "tk", "seq", name="uq_hits"),
)
Index("ix_hits_tk_hid", hits.c.tk, hits.c.hid)

firings = Table(
    "firings",
    metadata,
    Column("fid", BigInteger, primary_key=True, autoincrement=False),
    Column("command_id", String(64), nullable=False, unique=True),
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
    Column("published", Boolean, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
Index("ix_firings_tk_fid", firings.c.tk, firings.c.fid)
Index("ix_firings_trigger", firings.c.trigger_id, firings.c.tk)
Index("ix_firings_pending", firings.c.published, firings.c.source_topic, firings.c.source_partition)

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


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]


def migrate(conn: Connection) -> int:
    """Run pending migrations on a connection inside a transaction; return the version."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7243001)"))
    meta.create(conn, checkfirst=True)
    row = conn.execute(text("SELECT value FROM flagman_meta WHERE key = 'schema_version'")).first()
    current = int(row[0]) if row else 0
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
