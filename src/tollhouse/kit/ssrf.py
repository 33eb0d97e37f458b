"""Refuse URLs that would make the server call itself or its private network (SSRF).

Checked when a URL is configured; whoever fetches it later should still connect only to the
addresses checked here (DNS can change between check and use).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import anyio

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
