"""Refuse URLs that would make the server call itself or its private network (SSRF).

`check_public_url` is the check when a URL is configured (a clear 400); a client that fetches
such a URL later checks again at every connect and connects only to the addresses it checked
(DNS can change between check and use): httpx clients on `public_only_transport()`, aiohttp
clients (the forwarding engine) on `public_only_connector()`.
"""

from __future__ import annotations

import errno
import inspect
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from tollhouse.kit.errors import BadRequest


class UrlNotAllowed(BadRequest):
    code = "url_not_allowed"
    message = "This URL is not allowed: it must be https and reach a public address."


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone index
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_public_url(url: str, *, allow_private: bool) -> None:
    """400 `url_not_allowed` unless `url` is https and every address it resolves to is public.

    `allow_private` (development, local peers) skips the address check but not the scheme.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise UrlNotAllowed("This URL is not well-formed.") from exc
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise UrlNotAllowed()
    if allow_private:
        return
    try:
        infos = await anyio.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlNotAllowed("This URL's host does not resolve.") from exc
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(_is_public(address) for address in addresses):
        raise UrlNotAllowed()


# --- At connection time -------------------------------------------------------------------
# The check above runs when a URL is configured; DNS may answer differently by the time the
# URL is fetched (rebinding). A client built on `public_only_transport()` resolves the host
# itself when it opens a connection, refuses unless every address is public, and connects to
# the checked address literal, so what was checked is what is reached. TLS still verifies the
# certificate for the URL's host name: httpcore's `AsyncHTTPConnection._connect` passes
# `server_hostname=sni_hostname or origin.host` to `start_tls`, never the address connected to.

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (TCP), in the resolver's order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to public addresses, pinned at connect.

    `resolve` and `is_public` are injectable for tests; `backend` does the actual connecting
    (httpcore's AnyIO backend by default). Unix sockets are refused.
    """

    def __init__(
        self,
        *,
        resolve: Resolver = resolve_addresses,
        is_public: Callable[[str], bool] = _is_public,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolve = resolve
        self._is_public = is_public
        self._backend = backend if backend is not None else httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int) -> Sequence[str]:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return await self._resolve(host, port)
        return [host]  # an IP literal is checked as it is

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else anyio.current_time() + timeout
        try:
            with anyio.fail_after(timeout):
                addresses = await self._addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"Resolving {host} timed out.") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve.")
        refused = [address for address in addresses if not self._is_public(address)]
        if refused:
            raise httpcore.ConnectError(
                f"Refused to connect to {host}: {refused[0]} is not a public address."
            )
        failure: Exception | None = None
        for address in addresses:  # every one approved: try them in the resolver's order
            remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
            try:
                return await self._backend.connect_tcp(
                    address,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Refused to connect to a Unix socket: not a public address.")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def public_only_transport(
    *, network_backend: httpcore.AsyncNetworkBackend | None = None, **kwargs: Any
) -> httpx.AsyncHTTPTransport:
    """`httpx.AsyncHTTPTransport(**kwargs)` whose connections go through `PublicOnlyBackend`
    (or `network_backend`). No proxy or Unix socket: either would bypass the check.

    httpx's transport takes no network backend, so its connection pool is rebuilt here with
    the same arguments httpx's `__init__` would pass (read from its own signature's defaults)
    plus `network_backend`, and set on `_pool`: the one place a private attribute is touched
    (tests/test_ssrf.py fails if httpx stops keeping its pool there).
    """
    if kwargs.get("proxy") is not None or kwargs.get("uds") is not None:
        raise ValueError("A public-only transport takes no proxy and no Unix socket.")
    bound = inspect.signature(httpx.AsyncHTTPTransport).bind(**kwargs)
    bound.apply_defaults()
    args = bound.arguments
    # One SSL context for both pools (loading the CA bundle is the costly part).
    ssl_context = httpx.create_ssl_context(
        verify=args["verify"], cert=args["cert"], trust_env=args["trust_env"]
    )
    transport = httpx.AsyncHTTPTransport(**{**kwargs, "verify": ssl_context, "cert": None})
    limits: httpx.Limits = args["limits"]
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx.AsyncHTTPTransport no longer keeps its pool in `_pool`.")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=args["http1"],
        http2=args["http2"],
        local_address=args["local_address"],
        retries=args["retries"],
        socket_options=args["socket_options"],
        network_backend=network_backend if network_backend is not None else PublicOnlyBackend(),
    )
    return transport


# --- The same pinning for aiohttp (the forwarding engine) ------------------------------------
# aiohttp asks its resolver for a host's addresses each time it opens a connection (with its
# DNS cache off) and connects to exactly the addresses returned; TLS still verifies the
# certificate for the URL's host name (`server_hostname` is the name, not the address).


def _refused(host: str, address: str) -> OSError:
    # With an errno, aiohttp's ClientConnectorError shows this message (not "[None]").
    return OSError(
        errno.EACCES, f"Refused to connect to {host}: {address} is not a public address."
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves a host and returns its addresses only when every one of them is public."""

    def __init__(
        self,
        *,
        resolve: Resolver = resolve_addresses,
        is_public: Callable[[str], bool] = _is_public,
    ) -> None:
        self._resolve = resolve
        self.is_public = is_public

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._resolve(host, port)  # OSError: aiohttp's connect error
        if not addresses:
            raise OSError(errno.EHOSTUNREACH, f"{host} does not resolve.")
        refused = [address for address in addresses if not self.is_public(address)]
        if refused:
            raise _refused(host, refused[0])
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class PublicOnlyConnector(aiohttp.TCPConnector):
    """aiohttp's connector whose connections reach public addresses only.

    A name goes through `PublicOnlyResolver`; an IP literal never reaches a resolver in
    aiohttp (`TCPConnector._resolve_host` answers it directly), so it is checked here, in
    the one private method overridden (tests/test_ssrf.py fails if aiohttp stops using it).
    """

    def __init__(self, *, resolver: PublicOnlyResolver | None = None, **kwargs: Any) -> None:
        self._guard = resolver if resolver is not None else PublicOnlyResolver()
        super().__init__(resolver=self._guard, **kwargs)

    async def _resolve_host(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            if not self._guard.is_public(host):
                raise _refused(host, host)
        return await super()._resolve_host(host, port, *args, **kwargs)


def public_only_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    """`aiohttp.TCPConnector(**kwargs)` that connects only to checked public addresses."""
    return PublicOnlyConnector(**kwargs)
