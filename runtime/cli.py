"""The ``flagman`` command line: run, worker, apply, emit, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, WorkerConfig, load_config
from .logs import configure, get_logger

log = get_logger("flagman.cli")


def examples_dir() -> Path:
    """The bundled example triggers (repository checkout or current directory)."""
    for cand in (Path.cwd() / "examples", Path(__file__).resolve().parent.parent / "examples"):
        if cand.is_dir():
            return cand
    raise ConfigError("no examples/ directory found; pass --triggers PATH")


def _common(p: argparse.ArgumentParser, *, kafka: bool = True, db: bool = True) -> None:
    if kafka:
        p.add_argument("--bootstrap", help="Kafka bootstrap servers (FLAGMAN_BOOTSTRAP)")
    if db:
        p.add_argument("--db", help="SQLAlchemy URL of the store (FLAGMAN_DB)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flagman", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    run = sub.add_parser("run", help="the whole service on embedded defaults")
    _common(run)
    run.add_argument("--triggers", nargs="*", help="trigger files or folders (default: examples/)")
    run.add_argument("--http-port", type=int, default=None, help="HTTP endpoint port (default 8787)")

    worker = sub.add_parser("worker", help="the worker alone")
    _common(worker)
    worker.add_argument("--group", help="consumer group (FLAGMAN_GROUP)")
    worker.add_argument("--http-port", type=int, default=None, help="HTTP endpoint port (0: off)")

    apply = sub.add_parser("apply", help="validate and store trigger files")
    _common(apply, kafka=False)
    apply.add_argument("paths", nargs="+")
    apply.add_argument("--dry-run", action="store_true", help="validate and show the diff only")
    apply.add_argument("--prune", action="store_true", help="deactivate stored triggers not in PATHs")
    apply.add_argument("--full-diff", action="store_true", help="print every diff, not the first 100")

    emit = sub.add_parser("emit", help="announce one signal")
    _common(emit, db=False)
    emit.add_argument("name")
    emit.add_argument("params", nargs="*", help="k=v (string) or k:=JSON (typed, e.g. rows:=5)")
    emit.add_argument("--id", dest="sig_id")
    emit.add_argument("--source")
    emit.add_argument("--time")
    emit.add_argument("--payload", help="JSON payload")
    emit.add_argument("--topic", help="signal topic (default: first of FLAGMAN_SIGNAL_TOPICS)")

    explain = sub.add_parser("explain", help="why has a trigger (not) fired for a join tuple?")
    _common(explain, kafka=False)
    explain.add_argument("trigger")
    explain.add_argument("join", nargs="*", help="join values: dt=2026-11-25 (k:=JSON for typed)")

    sub.add_parser("demo", help="a scripted end-to-end story on embedded defaults")
    return parser


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``k=v`` gives a string, ``k:=v`` a JSON value (number, boolean, string)."""
    out: dict[str, Any] = {}
    for item in items:
        if ":=" in item and item.index(":=") < item.find("=") + 1:
            k, raw = item.split(":=", 1)
            try:
                out[k] = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(f"param {k}: not JSON: {raw!r}") from None
        elif "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
        else:
            raise ConfigError(f"param {item!r}: expected k=v or k:=JSON")
    return out


def _exit_before_start(signum: int, _frame: Any) -> None:
    # Until the worker installs its own handlers nothing is in flight: leave cleanly.
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb in ("worker", "run"):
        signal.signal(signal.SIGTERM, _exit_before_start)
    try:
        if args.verb == "apply":
            return asyncio.run(_apply(args))
        if args.verb == "emit":
            return asyncio.run(_emit(args))
        if args.verb == "explain":
            return asyncio.run(_explain(args))
        if args.verb == "worker":
            cfg = load_config(bootstrap=args.bootstrap, db=args.db, group=args.group,
                              http_port=args.http_port)
            configure(cfg.log_level, cfg.log_format)
            return asyncio.run(_serve(cfg, broker=None))
        if args.verb == "run":
            return asyncio.run(_run(args))
        if args.verb == "demo":
            from .demo import demo

            return asyncio.run(demo())
    except ConfigError as exc:
        print(f"flagman: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


async def _apply(args: argparse.Namespace) -> int:
    from triggers import DefinitionError

    from .apply import apply_definitions, load
    from .store.sql import SqlStore, StoreError

    cfg = load_config(db=args.db)
    try:
        defs = load(args.paths)
    except DefinitionError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        print(f"flagman apply: {len(exc.issues)} problem(s); nothing stored", file=sys.stderr)
        return 1
    store = SqlStore(cfg.db)
    try:
        if not args.dry_run:  # a dry run migrates inside the transaction it rolls back
            await store.open()
        report = await apply_definitions(store, defs, prune=args.prune, dry_run=args.dry_run)
    except StoreError as exc:
        print(f"flagman apply: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    for d in report.diffs(None if args.full_diff else 100):
        print(d)
    prefix = "dry run: would apply: " if args.dry_run else "applied: "
    print(prefix + report.summary())
    return 0


async def _explain(args: argparse.Namespace) -> int:
    from .explain import explain
    from .store.sql import SqlStore, StoreError

    cfg = load_config(db=args.db)
    store = SqlStore(cfg.db)
    try:
        await store.open(migrate_schema=False)  # it only reads
        lines = await explain(store, args.trigger, parse_params(args.join))
    except StoreError as exc:
        print(f"flagman explain: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print("\n".join(lines))
    return 0


async def _emit(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    cfg = load_config(bootstrap=args.bootstrap)
    body: dict[str, Any] = {"name": args.name, "params": parse_params(args.params)}
    if args.sig_id:
        body["id"] = args.sig_id
    if args.source:
        body["source"] = args.source
    if args.time:
        body["time"] = args.time
    if args.payload:
        try:
            body["payload"] = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--payload: not JSON: {exc}") from None
    # Check locally first: a bad signal is refused here rather than dead-lettered later.
    from signals import SignalError, parse_record

    value = json.dumps(body, separators=(",", ":")).encode()
    try:
        sig = parse_record(value, [], 0)
    except SignalError as exc:
        raise ConfigError(f"signal refused: {exc.reason}") from None
    topic = args.topic or cfg.topics[0]
    producer = AIOKafkaProducer(acks="all", enable_idempotence=False, **cfg.kafka_kwargs())
    try:
        await producer.start()
        meta = await producer.send_and_wait(topic, value, key=sig.name.encode())
    except KafkaError as exc:
        print(f"flagman emit: broker {cfg.bootstrap}: {exc}", file=sys.stderr)
        return 1
    finally:
        await producer.stop()
    print(f"emitted {sig.name} id={sig.id} to {meta.topic}/{meta.partition}@{meta.offset}")
    return 0


async def _run(args: argparse.Namespace) -> int:
    from .broker import EmbeddedBroker

    cfg = load_config(bootstrap=args.bootstrap, db=args.db,
                      http_port=8787 if args.http_port is None else args.http_port)
    configure(cfg.log_level, cfg.log_format)
    broker = None
    if not args.bootstrap:
        Path(".flagman").mkdir(exist_ok=True)
        if not args.db and "FLAGMAN_DB" not in os.environ:
            _fresh_state(Path(".flagman/flagman.db"))
        broker = EmbeddedBroker(log_dir=Path(".flagman"))
        await broker.start()
        cfg = on_embedded_broker(cfg, broker.bootstrap)
    print(f"broker: {cfg.bootstrap}", flush=True)
    try:
        from triggers import DefinitionError

        from .apply import apply_definitions, load
        from .store.sql import SqlStore

        paths = args.triggers or [str(examples_dir())]
        try:
            defs = load(paths)
        except DefinitionError as exc:
            for issue in exc.issues:
                print(f"error: {issue}", file=sys.stderr)
            return 1
        store = SqlStore(cfg.db)
        await store.open()
        report = await apply_definitions(store, defs)
        await store.close()
        print(f"triggers: {report.summary()} from {', '.join(paths)}", flush=True)
        return await _serve(cfg, broker=broker)
    finally:
        if broker is not None:
            await broker.stop()


def on_embedded_broker(cfg: WorkerConfig, bootstrap: str) -> WorkerConfig:
    """The settings for the embedded broker: its address, and the short fetch wait it
    needs unless ``FLAGMAN_FETCH_WAIT_MS`` says otherwise (see ``TANSU_FETCH_WAIT_MS``)."""
    from .kafka_compat import TANSU_FETCH_WAIT_MS

    update: dict[str, object] = {"bootstrap": bootstrap}
    if "FLAGMAN_FETCH_WAIT_MS" not in os.environ:
        update["fetch_wait_ms"] = TANSU_FETCH_WAIT_MS
    return cfg.model_copy(update=update)


def _fresh_state(db: Path) -> None:
    """The embedded broker keeps its topics in memory, so a new one starts empty: state
    that described the old topics (offsets, published commands) would only mislead.
    The previous database is kept beside it as ``flagman.db.prev``."""
    if db.exists():
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{db}{suffix}")
            if old.exists():
                old.replace(f"{db}.prev{suffix}")
        print(f"state: fresh {db} (embedded broker starts empty; previous state in {db}.prev)",
              flush=True)


async def _serve(cfg: WorkerConfig, broker: Any) -> int:
    from .store.sql import StoreError
    from .worker import Worker

    worker = Worker(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    runner = None
    if cfg.http_port:
        from .http import serve  # aiohttp takes ~0.3 s to import: only when serving

        runner, port = await serve(worker, cfg.http_host, cfg.http_port)
        print(f"http: http://{cfg.http_host}:{port}", flush=True)
    try:
        await worker.run()
    except StoreError as exc:
        print(f"flagman: {exc}", file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
