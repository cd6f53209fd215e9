"""The worker's small HTTP endpoint: health, metrics, installed triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .worker import Worker


def make_app(worker: Worker) -> web.Application:
    """``/healthz`` (200 once consuming), ``/metrics`` (Prometheus text), ``/triggers``,
    ``/explain?trigger=ID&dt=...`` (why a trigger has or has not fired for a tuple)."""

    async def healthz(_: web.Request) -> web.Response:
        ok = worker.ready.is_set()
        return web.json_response(
            {"status": "ok" if ok else "starting", "triggers": len(worker.matcher.index)},
            status=200 if ok else 503,
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=worker.metrics.prometheus(), content_type="text/plain")

    async def triggers(_: web.Request) -> web.Response:
        return web.json_response(
            [
                {"id": t.id, "version": t.version, "workflow": t.workflow, "step": t.step,
                 "join": list(t.join), "leaves": [leaf.label for leaf in t.leaves]}
                for t in sorted(worker.matcher.index.triggers.values(), key=lambda t: t.id)
            ]
        )

    async def explain(request: web.Request) -> web.Response:
        from .explain import explain as explain_lines

        tid = request.query.get("trigger")
        if not tid:
            return web.json_response({"error": "query parameter 'trigger' is required"}, status=400)
        join = {k: v for k, v in request.query.items() if k != "trigger"}
        lines = await explain_lines(worker.store, tid, join)
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/metrics", metrics),
                    web.get("/triggers", triggers), web.get("/explain", explain)])
    return app


async def serve(worker: Worker, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the endpoint; returns the runner (for cleanup) and the bound port."""
    runner = web.AppRunner(make_app(worker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server  # aiohttp keeps the asyncio server here
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = int(server.sockets[0].getsockname()[1])
    return runner, bound
