"""The outbound-URL guard: the one place that decides where Billhive may connect to
when an account admin sets the URL (the PSA site URL today, any tenant-set URL tomorrow).

Rules (docs/operations.md, "Outbound connections"):

* ``https`` only, unless the operator allows ``http`` (``BILLHIVE_OUTBOUND_ALLOW_HTTP=1``
  or the ``OUTBOUND_ALLOW_HTTP`` config key);
* no loopback, private (RFC 1918, ULA), link-local (169.254/16 with the cloud metadata
  address, fe80::/10), CGNAT (100.64/10), multicast, reserved, unspecified or otherwise
  non-global address, IPv4 and IPv6 alike, IPv4 inside IPv6 (mapped ``::ffff:a.b.c.d``,
  6to4, Teredo, NAT64 ``64:ff9b::/96``) checked as the IPv4 address it carries;
* the check runs **when connecting**, on every address the name resolves to, and the
  socket is opened to one of the addresses just checked (no second DNS lookup that a
  rebinding name could answer differently); TLS still verifies the certificate for the
  host name (SNI), and the Host header is the URL's;
* the operator's allowlist (``BILLHIVE_OUTBOUND_ALLOWLIST`` / ``OUTBOUND_ALLOWLIST``: host
  names, addresses or CIDRs, comma or space separated) lets named hosts or networks through
  the address rules (never through the scheme rule);
* no proxies from the environment and no redirects for guarded sessions;
* one message for every way a site cannot be used (:data:`UNREACHABLE`): refused by these
  rules, DNS failure, closed, filtered or open port, TLS failure, an answer that is not what
  was expected. Callers never echo what the remote end answered.

Use :func:`guarded_session` for the HTTP calls and :func:`url_problem` to validate a URL
when it is saved (a field error; the connection-time check still runs on every call).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

log = logging.getLogger("billhive.outbound")

#: The one message for a URL that cannot be used, whatever the reason.
UNREACHABLE = "The site URL cannot be reached or is not allowed"
HTTP_REFUSED = "Site URL must start with https:// (http:// only where the operator allows it)"

ENV_ALLOW_HTTP = "BILLHIVE_OUTBOUND_ALLOW_HTTP"
ENV_ALLOWLIST = "BILLHIVE_OUTBOUND_ALLOWLIST"
CONFIG_ALLOW_HTTP = "OUTBOUND_ALLOW_HTTP"
CONFIG_ALLOWLIST = "OUTBOUND_ALLOWLIST"

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Refused whatever this Python's ``ipaddress`` tables say (they changed between releases):
#: IANA's special-purpose ranges that are not globally reachable, CGNAT among them.
_SPECIAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/127", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip

Resolver = Callable[..., list]


class OutboundBlocked(Exception):
    """The guard refused a connection. ``str()`` is always :data:`UNREACHABLE`; ``reason``
    says why, for the operator's log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(UNREACHABLE)
        self.reason = reason


# -- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What the operator allows. ``resolver`` defaults to :func:`resolve`."""

    allow_http: bool = False
    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False)

    @classmethod
    def build(
        cls,
        allow_http: Any = False,
        allowlist: str | Iterable[str] | None = None,
        resolver: Resolver | None = None,
    ) -> Policy:
        hosts, networks = parse_allowlist(allowlist)
        return cls(_truthy(allow_http), hosts, networks, resolver)

    def allows_host(self, host: str) -> bool:
        return _host_key(host) in self.hosts

    def allows_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def parse_allowlist(value: str | Iterable[str] | None) -> tuple[frozenset[str], tuple]:
    """``(host names, networks)`` from ``"cw.internal, 10.1.2.0/24 127.0.0.1"`` or a list.
    An address is a /32 (/128) network; anything else is a host name compared exactly
    (case and a trailing dot ignored)."""
    if value is None:
        return frozenset(), ()
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    hosts, networks = set(), []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            hosts.add(_host_key(text))
    return frozenset(hosts), tuple(networks)


def current_policy() -> Policy:
    """The policy of the running app (its config keys), else of the environment."""
    config: Mapping[str, Any] = {}
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            config = current_app.config
    except ImportError:  # pragma: no cover - flask is a dependency of the core
        pass
    allow_http = config.get(CONFIG_ALLOW_HTTP)
    if allow_http is None:
        allow_http = os.environ.get(ENV_ALLOW_HTTP, "")
    allowlist = config.get(CONFIG_ALLOWLIST)
    if allowlist is None:
        allowlist = os.environ.get(ENV_ALLOWLIST, "")
    return Policy.build(allow_http, allowlist)


# -- addresses ----------------------------------------------------------------------------------


def resolve(host: str, port: int, type: int = socket.SOCK_STREAM) -> list:  # noqa: A002
    """``socket.getaddrinfo`` (looked up on each call: tests replace this function)."""
    return socket.getaddrinfo(host, port, type=type)


def forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address a tenant-set URL must never reach."""
    if isinstance(ip, ipaddress.IPv6Address):
        carried = []
        if ip.ipv4_mapped is not None:
            carried.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            carried.append(ip.sixtofour)
        if ip.teredo is not None:
            carried.extend(ip.teredo)
        if ip in _NAT64:
            carried.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(forbidden(v4) for v4 in carried):
            return True
        if ip.ipv4_mapped is not None:
            return False  # a public IPv4 address, written as IPv6
    if any(ip.version == net.version and ip in net for net in _SPECIAL):
        return True
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def checked_addresses(host: str, port: int, policy: Policy) -> list[tuple]:
    """Resolve ``host`` and check every address; ``[(family, type, proto, sockaddr)]`` to
    connect to, in the resolver's order. Raises :class:`OutboundBlocked` when any address
    is refused (one bad answer taints the name: a rebinding name may alternate), and
    ``socket.gaierror`` when the name does not resolve."""
    name = host.strip().strip("[]")
    if not name:
        raise OutboundBlocked("no host")
    try:
        literal = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        infos = (policy.resolver or resolve)(name, port, type=socket.SOCK_STREAM)
    else:  # an address in the URL: nothing to resolve
        if literal.version == 6:
            infos = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (name, port, 0, 0))]
        else:
            infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (name, port))]
    if not infos:
        raise OutboundBlocked(f"{name} resolves to nothing")
    host_allowed = policy.allows_host(name)
    out = []
    for family, type_, proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise OutboundBlocked(f"{name} resolves to a non-IP address family {family}")
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not host_allowed and not policy.allows_address(ip) and forbidden(ip):
            raise OutboundBlocked(f"{name} resolves to {ip}, which is not allowed")
        out.append((family, type_, proto, sockaddr))
    return out


def check_scheme(url: str, policy: Policy) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and policy.allow_http):
        return
    raise OutboundBlocked(f"scheme {scheme or '(none)'} is not allowed")


def url_problem(url: str, policy: Policy | None = None) -> str | None:
    """A field message when ``url`` may not be saved as a tenant-set URL, else None.

    The scheme gets its own message; a host that is (or resolves to) a refused address
    gets :data:`UNREACHABLE`. A name that does not resolve now is accepted: it cannot be
    reached either way, and every connection checks again."""
    policy = policy or current_policy()
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return UNREACHABLE
    try:
        check_scheme(url, policy)
    except OutboundBlocked:
        return HTTP_REFUSED
    try:
        checked_addresses(parts.hostname or "", port, policy)
    except OutboundBlocked as exc:
        log.info("refused a site URL: %s", exc.reason)
        return UNREACHABLE
    except (OSError, UnicodeError, ValueError):
        return None  # does not resolve now: connections are checked again anyway
    return None


# -- connections --------------------------------------------------------------------------------


def open_socket(family, type_, proto, sockaddr, timeout, source_address, options):
    """Open one TCP connection to an already checked address (tests spy on this)."""
    sock = socket.socket(family, type_, proto)
    try:
        for option in options or ():
            sock.setsockopt(*option)
        if timeout is not _DEFAULT_TIMEOUT:
            sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _GuardedConnection:
    """Mixin for urllib3 connections: resolve, check, connect to the checked address."""

    policy: Policy

    def _new_conn(self) -> socket.socket:
        host = self._dns_host  # type: ignore[attr-defined]
        try:
            targets = checked_addresses(host, self.port, self.policy)  # type: ignore[attr-defined]
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[attr-defined]
        error: Exception | None = None
        for family, type_, proto, sockaddr in targets:
            try:
                return open_socket(
                    family,
                    type_,
                    proto,
                    sockaddr,
                    self.timeout,  # type: ignore[attr-defined]
                    self.source_address,  # type: ignore[attr-defined]
                    self.socket_options,  # type: ignore[attr-defined]
                )
            except TimeoutError as exc:
                error = ConnectTimeoutError(self, f"connection to {self.host} timed out")  # type: ignore[attr-defined]
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(self, f"failed to establish a connection: {exc}")
        assert error is not None
        raise error


def _pool_classes(policy: Policy) -> dict[str, type]:
    class GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
        pass

    class GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
        pass

    GuardedHTTPConnection.policy = policy
    GuardedHTTPSConnection.policy = policy

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose every connection passes the guard."""

    def __init__(self, policy: Policy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.policy)

    def proxy_manager_for(self, proxy: str, **kwargs: Any):
        raise OutboundBlocked("guarded calls never go through a proxy")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any):
        check_scheme(request.url or "", self.policy)
        return super().send(request, *args, **kwargs)


def guarded_session(policy: Policy | None = None) -> requests.Session:
    """A ``requests.Session`` for tenant-set URLs: every connection passes the guard,
    no proxy or CA settings from the environment, no redirects followed."""
    policy = policy or current_policy()
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = 0
    adapter = GuardedAdapter(policy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
