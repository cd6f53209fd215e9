"""Settings: flags or ``FLAGMAN_*`` environment variables, checked at start-up."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB = "sqlite+aiosqlite:///./.flagman/flagman.db"
SQLITE_CACHE_MIB = 32
"""Page cache of each SQLite connection (SQLite's default is 2 MiB: index inserts stay
in memory), and the default of ``FLAGMAN_SQLITE_CACHE_MIB``, which sets it for the
connection that runs batches. The signals' identity index takes its inserts at random
places, and at a few hundred thousand signals its pages outgrow 32 MiB: each insert then
reads a page back from the OS. 256 MiB measured ~5% faster in process at 600k signals,
but the cache fills as the database grows: the worker's RSS rose by 110 MiB in the
3-minute churn soak (tests/faults/test_soak.py), and it would come on top of the
1M-trigger footprint. So it stays an operator's choice."""
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class ConfigError(Exception):
    """A setting is wrong; the message is one line naming it."""


class WorkerConfig(BaseSettings):
    """Everything the worker needs; each field reads ``FLAGMAN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLAGMAN_", extra="ignore")

    bootstrap: str = "localhost:9092"
    db: str = DEFAULT_DB
    signal_topics: str = "flagman.signals"
    command_topic: str = "flagman.commands"
    dlq_topic: str = "flagman.dlq"
    group: str = "flagman"
    create_topics: bool = True
    topic_partitions: int = Field(default=3, ge=1, le=10000)
    topic_replication: int = Field(default=1, ge=1, le=32)

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    batch_max: int = Field(default=5000, ge=1, le=100000)
    fetch_wait_ms: int = Field(default=100, ge=0, le=10000)
    state_max_tuples: int = Field(default=100_000, ge=100)
    signal_cache_max: int = Field(default=100_000, ge=0)
    sqlite_cache_mib: int = Field(default=SQLITE_CACHE_MIB, ge=2, le=65536)
    session_timeout_ms: int = Field(default=6000, ge=1000, le=300000)
    reload_interval_s: float = Field(default=1.0, gt=0, le=3600)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if not parts or not all(_HOSTPORT.match(p) for p in parts):
            raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {v!r}")
        return ",".join(parts)

    @field_validator("signal_topics")
    @classmethod
    def _topics(cls, v: str) -> str:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if not parts:
            raise ValueError("at least one topic is required")
        for p in parts:
            if not _TOPIC.match(p):
                raise ValueError(f"invalid topic name {p!r}")
        return ",".join(parts)

    @field_validator("command_topic", "dlq_topic", "group")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not _TOPIC.match(v):
            raise ValueError(f"invalid name {v!r} (1-249 chars of A-Z a-z 0-9 . _ -)")
        return v

    @property
    def topics(self) -> list[str]:
        return self.signal_topics.split(",")

    def kafka_kwargs(self) -> dict[str, Any]:
        """Client settings shared by consumers, producers and admin clients."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            kw["sasl_mechanism"] = self.kafka_sasl_mechanism
            kw["sasl_plain_username"] = self.kafka_sasl_username
            kw["sasl_plain_password"] = self.kafka_sasl_password
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile,
                certfile=self.kafka_ssl_certfile,
                keyfile=self.kafka_ssl_keyfile,
            )
        return kw


def load_config(**overrides: Any) -> WorkerConfig:
    """Build the config from the environment plus explicit overrides (``None`` = unset).

    Raises ``ConfigError`` with one line naming the setting and the problem.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg = WorkerConfig(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"setting FLAGMAN_{field.upper()}: {msg}") from None
    from .store.sql import StoreError, check_db_url

    try:
        check_db_url(cfg.db)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    needs_user = cfg.kafka_sasl_mechanism not in (None, "OAUTHBEARER")
    if needs_user and not (cfg.kafka_sasl_username and cfg.kafka_sasl_password):
        raise ConfigError(
            "setting FLAGMAN_KAFKA_SASL_USERNAME/PASSWORD: required with "
            f"FLAGMAN_KAFKA_SASL_MECHANISM={cfg.kafka_sasl_mechanism}"
        )
    if cfg.kafka_security_protocol.startswith("SASL") and not cfg.kafka_sasl_mechanism:
        raise ConfigError(
            "setting FLAGMAN_KAFKA_SASL_MECHANISM: required with "
            f"FLAGMAN_KAFKA_SECURITY_PROTOCOL={cfg.kafka_security_protocol}"
        )
    try:
        cfg.kafka_kwargs()  # builds the TLS context: a missing CA file fails here
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting FLAGMAN_KAFKA_SSL_*: {exc}") from None
    return cfg
