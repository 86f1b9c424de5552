"""core.outbound: the guard for tenant-set URLs (addresses, DNS rebinding, allowlist, scheme).

Every test that expects a refusal also proves that nothing was connected: a listening socket
that must have no connection waiting, and a spy on the one function that opens sockets.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from core import outbound
from core.outbound import UNREACHABLE, Policy


@pytest.fixture
def listener():
    """A TCP socket listening on 127.0.0.1 that nobody accepts from: ``connected()`` tells
    whether anything connected to it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)

    class Listener:
        port = sock.getsockname()[1]

        @staticmethod
        def connected() -> bool:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return False
            conn.close()
            return True

    yield Listener
    sock.close()


@pytest.fixture
def opened(monkeypatch):
    """Every address the guard opened a socket to."""
    seen: list = []
    real = outbound.open_socket

    def spy(family, type_, proto, sockaddr, *args):
        seen.append(sockaddr[0])
        return real(family, type_, proto, sockaddr, *args)

    monkeypatch.setattr(outbound, "open_socket", spy)
    return seen


def fake_dns(answers):
    """A resolver: host -> list of addresses (or a callable giving one per call)."""

    def resolver(host, port, type=socket.SOCK_STREAM):  # noqa: A002
        found = answers[host]() if callable(answers[host]) else answers[host]
        out = []
        for address in found:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            out.append((family, type, 6, "", sockaddr))
        return out

    return resolver


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "239.255.255.250",
        "240.0.0.1", "255.255.255.255", "192.0.0.8", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
        "2002:7f00:1::1", "2002:a00:1::1", "64:ff9b::a00:1", "64:ff9b::7f00:1", "100::1",
    ],
)  # fmt: skip
def test_refused_addresses(address):
    assert outbound.forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address):
    assert not outbound.forbidden(ipaddress.ip_address(address))


def test_allowlist_parses_hosts_addresses_and_cidrs():
    hosts, networks = outbound.parse_allowlist("CW.Internal., 10.1.2.0/24 127.0.0.1,[::1]")
    assert hosts == {"cw.internal"}
    assert [str(n) for n in networks] == ["10.1.2.0/24", "127.0.0.1/32", "::1/128"]
    assert outbound.parse_allowlist(None) == (frozenset(), ())


def test_policy_comes_from_the_app_config_else_the_environment(monkeypatch, make_app):
    monkeypatch.setenv("BILLHIVE_OUTBOUND_ALLOW_HTTP", "yes")
    monkeypatch.setenv("BILLHIVE_OUTBOUND_ALLOWLIST", "cw.local 10.9.0.0/16")
    policy = outbound.current_policy()
    assert policy.allow_http and policy.hosts == {"cw.local"}
    assert [str(n) for n in policy.networks] == ["10.9.0.0/16"]
    app = make_app(plugins=[], OUTBOUND_ALLOW_HTTP=False, OUTBOUND_ALLOWLIST="")
    with app.app_context():
        policy = outbound.current_policy()
    assert not policy.allow_http and policy.hosts == frozenset() and policy.networks == ()
    monkeypatch.delenv("BILLHIVE_OUTBOUND_ALLOW_HTTP")
    monkeypatch.delenv("BILLHIVE_OUTBOUND_ALLOWLIST")
    assert outbound.current_policy() == Policy()  # the default: https, nothing allowlisted


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/", "http://localhost:{port}/", "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/", "http://10.0.0.1:{port}/",
        "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://0.0.0.0:{port}/",
        "http://2130706433:{port}/",
    ],
)  # fmt: skip
def test_a_guarded_session_never_connects_to_a_refused_address(url, listener, opened):
    session = outbound.guarded_session(Policy(allow_http=True))
    with pytest.raises(outbound.OutboundBlocked) as caught:
        session.get(url.format(port=listener.port), timeout=2)
    assert str(caught.value) == UNREACHABLE
    assert opened == [] and not listener.connected()


def test_every_resolved_address_is_checked(listener, opened):
    """A name answering a public address and a loopback one is refused as a whole."""
    policy = Policy(allow_http=True, resolver=fake_dns({"mixed.test": ["93.184.216.34",
                                                                        "127.0.0.1"]}))  # fmt: skip
    with pytest.raises(outbound.OutboundBlocked):
        outbound.guarded_session(policy).get(f"http://mixed.test:{listener.port}/", timeout=2)
    assert opened == [] and not listener.connected()


def test_dns_rebinding_is_caught_at_connection_time(listener, opened):
    """The name resolves to a public address when the URL is saved, to 127.0.0.1 when the
    connection is made: the check at connection time refuses it."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    policy = Policy(allow_http=True, resolver=fake_dns({"rebind.test": lambda: next(answers)}))
    url = f"http://rebind.test:{listener.port}/"
    assert outbound.url_problem(url, policy) is None  # saved: looked public then
    with pytest.raises(outbound.OutboundBlocked):
        outbound.guarded_session(policy).get(url, timeout=2)
    assert opened == [] and not listener.connected()


class _EchoHost(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHost)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_socket_goes_to_the_checked_address_with_the_urls_host(http_server, opened):
    """One DNS answer is used: the connection goes to the address that was checked (the
    second answer of a rebinding name is never asked for), the Host header is the URL's."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    policy = Policy(
        allow_http=True,
        hosts=frozenset({"cw.internal.test"}),  # the operator allowlisted this name
        resolver=fake_dns({"cw.internal.test": lambda: next(answers)}),
    )
    resp = outbound.guarded_session(policy).get(f"http://cw.internal.test:{http_server}/")
    assert resp.text == f"host=cw.internal.test:{http_server}"
    assert opened == ["127.0.0.1"]


def test_the_allowlist_lets_addresses_and_networks_through(http_server, opened):
    for allow in ("127.0.0.1", "127.0.0.0/8"):
        policy = Policy.build(True, allow)
        assert outbound.guarded_session(policy).get(f"http://127.0.0.1:{http_server}/").ok
    assert opened == ["127.0.0.1", "127.0.0.1"]


def test_https_only_unless_the_operator_allows_http(listener, opened):
    policy = Policy.build(False, "127.0.0.1")
    url = f"http://127.0.0.1:{listener.port}/"
    with pytest.raises(outbound.OutboundBlocked):
        outbound.guarded_session(policy).get(url, timeout=2)
    assert opened == [] and not listener.connected()
    assert outbound.url_problem(url, policy).startswith("Site URL must start with https://")
    assert outbound.url_problem(url, Policy.build(True, "127.0.0.1")) is None


def test_url_problem_at_save_time():
    policy = Policy(resolver=fake_dns({"cw.example.test": ["93.184.216.34"],
                                       "inside.test": ["10.1.1.1"]}))  # fmt: skip
    assert outbound.url_problem("https://cw.example.test", policy) is None
    assert outbound.url_problem("https://inside.test", policy) == UNREACHABLE
    assert outbound.url_problem("https://127.0.0.1", policy) == UNREACHABLE
    assert outbound.url_problem("https://[fe80::1]", policy) == UNREACHABLE
    # a name that does not resolve now is accepted: every connection checks again
    assert outbound.url_problem("https://nowhere.invalid", Policy()) is None


def test_proxies_from_the_environment_are_not_used(monkeypatch, http_server, opened):
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("http_proxy", "http://10.0.0.1:3128")
    session = outbound.guarded_session(Policy.build(True, "127.0.0.1"))
    assert session.get(f"http://127.0.0.1:{http_server}/").ok
    assert opened == ["127.0.0.1"]
    with pytest.raises(outbound.OutboundBlocked):
        session.get(f"http://127.0.0.1:{http_server}/", proxies={"http": "http://10.0.0.1:1"})


def test_redirects_are_not_followed(monkeypatch, opened):
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        session = outbound.guarded_session(Policy.build(True, "127.0.0.1"))
        with pytest.raises(requests.TooManyRedirects):
            session.get(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert opened == ["127.0.0.1"]


def _self_signed(tmp_path, name):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_https_verifies_the_certificate_for_the_urls_host_name(tmp_path, opened):
    """The socket goes to the checked address; TLS still sends the URL's host name (SNI) and
    verifies the certificate against it."""
    import ssl

    cert, key = _self_signed(tmp_path, "cw.tls.test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHost)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server_names: list = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = server.server_address[1]
    try:
        policy = Policy(
            hosts=frozenset({"cw.tls.test"}),
            resolver=fake_dns({"cw.tls.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}),
        )
        session = outbound.guarded_session(policy)
        session.verify = cert
        assert session.get(f"https://cw.tls.test:{port}/").text == f"host=cw.tls.test:{port}"
        assert server_names == ["cw.tls.test"]
        session = outbound.guarded_session(Policy.build(False, "other.test", policy.resolver))
        session.verify = cert
        with pytest.raises(requests.exceptions.SSLError):  # the certificate names another host
            session.get(f"https://other.test:{port}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert opened == ["127.0.0.1", "127.0.0.1"]


def test_no_other_module_opens_http_connections_of_its_own():
    """Outbound HTTP goes through core.outbound: no module builds its own session or
    connection (a tenant-set URL would bypass the guard). An operator-set URL may use a
    guarded session with its own policy too."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(
        r"requests\.(get|post|put|patch|delete|head|request|Session)\(|urllib\.request|"
        r"http\.client|urllib3\.(PoolManager|connection_from_url)|socket\.create_connection|"
        r"httpx|aiohttp"
    )
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("core", "plugins", "hostapp")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "core" / "outbound.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
