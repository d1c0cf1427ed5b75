"""An httpx transport that connects only where the SSRF guard allows, and fails in worker terms.

`GuardedBackend` resolves each new connection's host itself, checks every address with
`procjob.worker.ssrf`, and opens the socket to the checked address (TLS still verifies and sends
SNI for the host name), so DNS cannot answer differently between check and connect. Connections
are made per origin, so every redirect hop to a new host passes the guard again.

`GuardedTransport` maps httpcore's exceptions to `SourceUnavailable` (transient) or
`SourceRejected` (permanent), with the URL redacted, both when sending and while the body streams.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Iterator, Sequence

import httpcore
import httpx

from procjob.worker.errors import SourceRejected, SourceUnavailable
from procjob.worker.log import event, redact_url
from procjob.worker.ssrf import IPNetwork, resolve_checked


class GuardedBackend(httpcore.SyncBackend):
    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._allowed = tuple(allowed)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_checked(host, port, self._allowed)
        last: Exception | None = None
        for address in addresses:
            try:
                stream = super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            event("http.connected", host=host, address=str(address), port=port)
            return stream
        assert last is not None
        raise last


@contextlib.contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    where = f"{request.method} {redact_url(request.url)}"
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise SourceUnavailable(f"{where}: {type(exc).__name__} (timed out)") from None
    except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
        raise SourceUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
    except httpcore.LocalProtocolError:
        # h11's message may quote a header value; say only what kind of failure it was.
        raise SourceRejected(f"{where}: the request is not valid HTTP") from None
    except httpcore.UnsupportedProtocol:
        raise SourceRejected(f"{where}: unsupported URL scheme") from None


class _TranslatedStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _translated(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _translated(self._request):
                close()


class GuardedTransport(httpx.BaseTransport):
    def __init__(self, allowed: Sequence[IPNetwork], ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=4,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allowed),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translated(request):
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_TranslatedStream(response.stream, request),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
