"""Fetching URLs a client or a model named, safely: bounded size, time and redirects, and an SSRF guard.

The guard sits where the socket is opened (an httpcore network backend): the host is resolved, every
address it resolves to is checked, and the connection goes to an address that was checked — so neither a
redirect nor a DNS answer that changes between check and connect (rebinding) can reach a loopback,
private, link-local or otherwise non-global address unless `allow_private_networks` is set. Redirects are
followed here, one hop at a time, so each hop is checked the same way (and may be vetoed by `allow_url`).
Proxies from the environment are never used: a proxy would make the check apply to the proxy instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

SocketOption = Any  # httpcore's socket option tuple


class FetchError(Exception):
    """A fetch that did not produce a usable response; `kind` says why (timeout, refused, http, network…)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class FetchLimits:
    timeout_s: float = 10.0  # the whole fetch, every redirect included
    max_bytes: int = 2_000_000  # the (decoded) body is cut here
    max_redirects: int = 5
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs reachable even when private networks are not (an intranet)
    user_agent: str = "ddx-omni/1.0"


@dataclass
class FetchResult:
    url: str  # after redirects
    status: int
    content_type: str  # media type only, lower case ("text/html")
    content: bytes
    truncated: bool  # the body was longer than max_bytes
    encoding: str | None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_allowed(address: str, networks: tuple[Network, ...] = ()) -> bool:
    """Whether an IP may be reached without allow_private_networks: public unicast, or inside `networks`."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id (fe80::1%eth0) is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in networks):
        return True
    return ip.is_global and not ip.is_multicast


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked one (never re-resolving the name)."""

    def __init__(self, allow_private: bool, networks: tuple[Network, ...]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._networks = networks

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        if not self._allow_private:
            blocked = [a for a in addresses if not address_allowed(a, self._networks)]
            if blocked:
                what = "is" if blocked[0] == host else f"resolves to {blocked[0]}, which is"
                raise FetchError("refused", f"refused to connect to {host}: it {what} a non-public address "
                                            "(loopback, private or link-local; allow_private_networks is off)")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("dns", f"cannot resolve {host}: {exc.strerror}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ARG002 (httpcore's signature)
                                  socket_options: Iterable[SocketOption] | None = None,  # noqa: ARG002
                                  ) -> httpcore.AsyncNetworkStream:
        raise FetchError("refused", "unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore's exceptions → httpx's (httpx does this in its own transport; this one is ours).
_MAPPED: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError), (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError), (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError), (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError), (httpcore.TimeoutException, httpx.TimeoutException),
)


_CORE_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)


def _mapped(exc: Exception) -> Exception:
    for source, target in _MAPPED:
        if isinstance(exc, source):
            return target(str(exc))
    return exc


class _CoreStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except _CORE_ERRORS as exc:
            raise _mapped(exc) from None

    async def aclose(self) -> None:
        await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool whose sockets come from the guarded backend."""

    def __init__(self, allow_private_networks: bool = False, allowed_networks: tuple[str, ...] = ()) -> None:
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=httpx.create_ssl_context(), max_connections=32,
                                                  network_backend=_GuardedBackend(allow_private_networks, networks))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(method=request.method, headers=request.headers.raw, content=request.stream,
                                extensions=request.extensions,
                                url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                                                 port=request.url.port, target=request.url.raw_path))
        try:
            response = await self._pool.handle_async_request(core)
        except _CORE_ERRORS as exc:
            raise _mapped(exc) from None
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_CoreStream(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


class Fetcher:
    """GETs http(s) URLs under FetchLimits. One per component; `aclose` at stop."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        # No cookies kept: one shared client serves every request, and one user's fetch must not carry
        # cookies another's earned.
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self._client = httpx.AsyncClient(transport=GuardedTransport(limits.allow_private_networks,
                                                                             limits.allowed_networks),
                                         follow_redirects=False, trust_env=False, cookies=no_cookies,
                                         headers={"User-Agent": limits.user_agent},
                                         timeout=httpx.Timeout(limits.timeout_s))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, url: str, *, accept: str = "*/*",
                  allow_url: Callable[[httpx.URL], str | None] | None = None) -> FetchResult:
        """Fetch `url`; `allow_url` may veto any hop (it returns the reason). Raises FetchError."""
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                return await self._follow(httpx.URL(url), accept, allow_url)
        except (TimeoutError, httpx.TimeoutException):
            raise FetchError("timeout", f"{url} did not answer within {self.limits.timeout_s:g} s") from None
        except httpx.InvalidURL as exc:
            raise FetchError("invalid_url", f"{url} is not a valid URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError("network", f"fetching {url} failed: {type(exc).__name__}: {exc}") from None

    async def _follow(self, url: httpx.URL, accept: str,
                      allow_url: Callable[[httpx.URL], str | None] | None) -> FetchResult:
        for _hop in range(self.limits.max_redirects + 1):
            _check_url(url, allow_url)
            request = self._client.build_request("GET", url, headers={"Accept": accept})
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect and response.next_request is not None:
                    url = response.next_request.url
                    continue
                if response.status_code >= 400:
                    raise FetchError("http", f"{url} answered HTTP {response.status_code}")
                return await self._read(url, response)
            finally:
                await response.aclose()
        raise FetchError("redirects", f"more than {self.limits.max_redirects} redirects")

    async def _read(self, url: httpx.URL, response: httpx.Response) -> FetchResult:
        body = bytearray()
        truncated = False
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.limits.max_bytes:
                del body[self.limits.max_bytes:]
                truncated = True
                break
        media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return FetchResult(url=str(url), status=response.status_code, content_type=media, content=bytes(body),
                           truncated=truncated, encoding=response.charset_encoding)


def _check_url(url: httpx.URL, allow_url: Callable[[httpx.URL], str | None] | None) -> None:
    if url.scheme not in ("http", "https"):
        raise FetchError("refused", f"only http and https URLs are fetched, not {url.scheme or 'a relative'!s}: {url}")
    if not url.host:
        raise FetchError("invalid_url", f"{url} has no host")
    reason = allow_url(url) if allow_url is not None else None
    if reason:
        raise FetchError("refused", reason)
