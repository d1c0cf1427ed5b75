"""The suite's proxies, in their own process: the operators reach the API server and PostgreSQL
only through them, so the suite can see every request each replica makes and can fail the wire.

    python -m chaos.proxy --kubeconfig K --api NAME=PORT [--api NAME=PORT ...]
                          --pg PORT=UPSTREAM_PORT --control PORT --log FILE

- API: one plain-HTTP listener per operator replica (its kubeconfig points there), forwarding to
  the API server over TLS with the rig's admin credentials. Each request is logged as a JSON line
  [arrival time, replica, method, path, status, seconds, watch?]; a watch stream that carries a
  410 Gone is logged with status 410. Stall (`POST /stall?seconds=S`): for S seconds every watch
  stream goes silent (nothing relayed either way, nothing read from the API server) and new watch
  requests hang; when the stall ends the silent streams are cut (a dropped connection's fate),
  the held requests go on. Other requests pass: the operators keep writing with stale caches.
- PostgreSQL: a TCP relay; `POST /latency?ms=N` delays every chunk from the operator to the
  server by N ms (so each round trip by at least N). `POST /cut` closes every relayed connection.
- A refused upstream connection is passed on as a reset client connection, as if the server were
  down. `GET /stats` returns counts by replica and status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiohttp import web
from tests.support.kube import _tls

HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


class ApiProxy:
    def __init__(self, upstream: str, ssl_ctx: Any, log: IO[str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl_ctx = ssl_ctx
        self.log_file = log
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.stats: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_ctx, limit=0, force_close=False)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def log(self, start: float, replica: str, method: str, path: str, status: int, watch: bool) -> None:
        self.stats[f"{replica} {status}"] += 1
        line = [round(start, 3), replica, method, path, status, round(time.time() - start, 3), watch]
        self.log_file.write(json.dumps(line, separators=(",", ":")) + "\n")

    async def stall(self, seconds: float) -> None:
        self.flowing.clear()
        self.stats["stalls"] += 1
        await asyncio.sleep(seconds)
        self.flowing.set()

    def app(self, replica: str) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.forward(request, replica)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def forward(self, request: web.Request, replica: str) -> web.StreamResponse:
        start = time.time()
        watch = request.query.get("watch") in ("1", "true")
        if watch:
            await self.flowing.wait()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None if watch else 180)
        try:
            async with self.session.request(
                request.method, self.upstream + request.path_qs, data=body or None, headers=headers, timeout=timeout
            ) as upstream:
                if watch and upstream.status == 200:
                    return await self._stream(request, upstream, replica, start)
                data = await upstream.read()
                self.log(start, replica, request.method, request.path, upstream.status, watch)
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
                return web.Response(status=upstream.status, body=data, headers=out)
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.log(start, replica, request.method, request.path, 0, watch)
            if request.transport is not None:
                request.transport.abort()  # the client sees its connection reset, as from a dead server
            raise web.HTTPBadGateway() from None

    async def _stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, replica: str, start: float
    ) -> web.StreamResponse:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        resp = web.StreamResponse(status=upstream.status, headers=headers)
        await resp.prepare(request)
        status = 200
        try:
            async for chunk in upstream.content.iter_any():
                if not self.flowing.is_set():
                    await self.flowing.wait()  # silent: nothing read, nothing relayed
                    status = 599  # then cut, as a dropped connection would be
                    if request.transport is not None:
                        request.transport.abort()
                    break
                if b'"code":410' in chunk:
                    status = 410
                await resp.write(chunk)
        except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError):
            status = 0 if status == 200 else status
        self.log(start, replica, request.method, request.path, status, True)
        return resp


class PgProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.latency = 0.0
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer, delayed=True), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self.writers.discard(w)
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool = False) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if delayed and self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    def cut(self) -> int:
        cut = len(self.writers)
        for writer in list(self.writers):
            writer.transport.abort()
        return cut


def control_app(api: ApiProxy, pg: PgProxy | None) -> web.Application:
    tasks: set[asyncio.Task[None]] = set()

    async def stall(request: web.Request) -> web.Response:
        task = asyncio.create_task(api.stall(float(request.query["seconds"])))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response({"stalled": True})

    async def latency(request: web.Request) -> web.Response:
        assert pg is not None
        pg.latency = float(request.query["ms"]) / 1000
        return web.json_response({"latency_ms": pg.latency * 1000})

    async def cut(request: web.Request) -> web.Response:
        assert pg is not None
        return web.json_response({"cut": pg.cut()})

    async def stats(request: web.Request) -> web.Response:
        api.log_file.flush()
        return web.json_response(dict(api.stats))

    app = web.Application()
    app.router.add_post("/stall", stall)
    app.router.add_post("/latency", latency)
    app.router.add_post("/cut", cut)
    app.router.add_get("/stats", stats)
    return app


async def serve(args: argparse.Namespace) -> None:
    server, ssl_ctx = _tls(args.kubeconfig)
    with args.log.open("a", buffering=1 << 16) as log:
        api = ApiProxy(server, ssl_ctx, log)
        runners = []
        for spec in args.api:
            name, port = spec.split("=")
            runner = web.AppRunner(api.app(name), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", int(port)).start()
            runners.append(runner)
        pg = None
        if args.pg:
            port, upstream = (int(x) for x in args.pg.split("="))
            pg = PgProxy(upstream)
            await asyncio.start_server(pg.handle, "127.0.0.1", port)
        control = web.AppRunner(control_app(api, pg), access_log=None)
        await control.setup()
        await web.TCPSite(control, "127.0.0.1", args.control).start()
        print("ready", flush=True)
        while True:
            await asyncio.sleep(1)
            log.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--api", action="append", required=True, help="NAME=PORT")
    parser.add_argument("--pg", help="PORT=UPSTREAM_PORT")
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
