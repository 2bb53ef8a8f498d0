"""The client address behind reverse proxies: X-Forwarded-For, believed only from trusted peers.

werkzeug's ProxyFix believes the last `proxy_count` entries of X-Forwarded-For from whoever
sends them; anyone reaching the API directly could then pick their own address (and their own
rate-limit bucket). So ProxyFix applies only to requests whose peer is one of `[SERVICE]
trusted_proxies`; from any other peer the header is ignored and the peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["TrustedProxyFix"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxyFix:
    """WSGI middleware: ProxyFix (X-Forwarded-For only) for requests from trusted proxies."""

    def __init__(self, app: WSGIApplication, trusted: Sequence[Network], count: int = 1) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        self.fixed = ProxyFix(app, x_for=count, x_proto=0, x_host=0, x_port=0, x_prefix=0)

    def _is_trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return _within(address, self.trusted)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._is_trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def _within(address: Any, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)
