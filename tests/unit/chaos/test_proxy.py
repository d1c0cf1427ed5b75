"""chaos.proxy against local servers: requests pass and are logged per replica; a stall silences
watch streams, holds new watches and then cuts the silenced streams while other requests pass; a
dead upstream resets the client's connection; the PostgreSQL relay adds its latency."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from chaos.proxy import ApiProxy, PgProxy


async def upstream_app(events: asyncio.Queue[bytes]) -> web.Application:
    async def plain(request: web.Request) -> web.Response:
        return web.json_response(
            {"path": request.path, "method": request.method}, status=201 if request.method == "POST" else 200
        )

    async def watch(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "1":
            return web.json_response({"items": []})
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            await resp.write(await events.get())

    app = web.Application()
    app.router.add_route("*", "/api/v1/pods", watch)
    app.router.add_route("*", "/{tail:.*}", plain)
    return app


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, asyncio.Queue[bytes], ApiProxy, io.StringIO]]:
    events: asyncio.Queue[bytes] = asyncio.Queue()
    up = web.AppRunner(await upstream_app(events), shutdown_timeout=0.5)
    await up.setup()
    site = web.TCPSite(up, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log = io.StringIO()
    proxy = ApiProxy(f"http://127.0.0.1:{port}", False, log)
    front = web.AppRunner(proxy.app("a"), shutdown_timeout=0.5)
    await front.setup()
    front_site = web.TCPSite(front, "127.0.0.1", 0)
    await front_site.start()
    front_port = front_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{front_port}", events, proxy, log
    await front.cleanup()
    await up.cleanup()
    await proxy.session.close()


async def test_requests_pass_and_are_logged(servers: tuple[str, asyncio.Queue[bytes], ApiProxy, io.StringIO]) -> None:
    base, _, proxy, log = servers
    async with aiohttp.ClientSession() as session, session.post(base + "/api/v1/namespaces/x/events", json={}) as resp:
        assert resp.status == 201
        assert (await resp.json())["path"] == "/api/v1/namespaces/x/events"
    line = json.loads(log.getvalue().splitlines()[-1])
    assert line[1:5] == ["a", "POST", "/api/v1/namespaces/x/events", 201]
    assert proxy.stats["a 201"] == 1


async def test_a_stall_silences_and_then_cuts_watches(
    servers: tuple[str, asyncio.Queue[bytes], ApiProxy, io.StringIO],
) -> None:
    base, events, proxy, log = servers
    async with aiohttp.ClientSession() as session:
        resp = await session.get(base + "/api/v1/pods?watch=1")
        events.put_nowait(b'{"type":"ADDED"}\n')
        assert await asyncio.wait_for(resp.content.readline(), 5) == b'{"type":"ADDED"}\n'
        stall = asyncio.create_task(proxy.stall(1.0))
        await asyncio.sleep(0.05)
        events.put_nowait(b'{"type":"MODIFIED"}\n')
        started = time.monotonic()
        held = asyncio.create_task(session.get(base + "/api/v1/pods?watch=1"))
        async with session.get(base + "/api/v1/other") as other:  # not a watch: passes during the stall
            assert other.status == 200
        assert time.monotonic() - started < 0.9
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError)):
            await drain(resp)  # the silenced stream is cut when the stall ends
        assert time.monotonic() - started >= 0.9
        second = await held
        assert second.status == 200
        assert time.monotonic() - started >= 0.9  # held until the stall ended
        second.close()
        await stall
    assert any(json.loads(line)[4] == 599 for line in log.getvalue().splitlines())


async def drain(resp: aiohttp.ClientResponse) -> None:
    while await resp.content.readline():
        pass
    raise ConnectionError("the stream ended without an error")


async def test_a_dead_upstream_resets_the_client() -> None:
    proxy = ApiProxy("http://127.0.0.1:9", False, io.StringIO())
    runner = web.AppRunner(proxy.app("b"), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/version") as resp:
                    await resp.read()
    finally:
        await runner.cleanup()
        await proxy.session.close()
    assert proxy.stats["b 0"] >= 1  # aiohttp may try a GET twice


async def test_the_postgres_relay_adds_latency() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    relay = PgProxy(server.sockets[0].getsockname()[1])
    front = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", front.sockets[0].getsockname()[1])
    try:
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.read(4), 5) == b"ping"
        relay.latency = 0.3
        started = time.monotonic()
        writer.write(b"pong")
        assert await asyncio.wait_for(reader.read(4), 5) == b"pong"
        assert time.monotonic() - started >= 0.3
        assert relay.cut() == 2
    finally:
        writer.close()
        front.close()
        server.close()
