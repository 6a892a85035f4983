"""Tests for opencustomvision.imaging.fetch, the guard against server-side request forgery.

Only 127.0.0.1 is ever contacted: a guard on socket.connect fails the test on
any other destination, and a guard on getaddrinfo fails it on any real DNS
lookup (names that matter are answered by a fake resolver).
"""

from __future__ import annotations

import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from opencustomvision.imaging.fetch import FetchError, FetchPolicy, fetch_bytes

pytestmark = pytest.mark.db_independent



def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
DRIP_SECONDS = 3.0  # how long the slow endpoints keep dripping before giving up on the client


# --- a tiny server on 127.0.0.1 ------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "RecordingServer"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.requests.append((path, self.headers.get("Host", "")))
        query = parse_qs(urlsplit(self.path).query)
        try:
            if path == "/image.png":
                self._send(200, PNG, {"Content-Type": "image/png"})
            elif path == "/redirect":
                self._send(302, b"", {"Location": query["to"][0]})
            elif path == "/loop":
                self._send(302, b"", {"Location": "/loop"})
            elif path == "/missing":
                self._send(404, b"not here", {})
            elif path == "/big":
                self._send(200, bytes(5000), {})
            elif path == "/big-unannounced":
                # No Content-Length: the body simply runs until the connection closes.
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(bytes(5000))
                self.close_connection = True
            elif path == "/gzip":
                self._send(200, b"\x1f\x8b" + bytes(100), {"Content-Encoding": "gzip"})
            elif path == "/slow-body":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self._drip(b"x")
            elif path == "/drip-then-stall":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self._drip(b"x", seconds=0.6)
                time.sleep(DRIP_SECONDS)
            elif path == "/declared-huge":
                # Announces a huge body, then sends nothing: only the header can stop this early.
                self.send_response(200)
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                self.wfile.flush()
                time.sleep(DRIP_SECONDS)
            elif path == "/slow-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self._drip(b"X-Drip: y\r\n")
            else:
                self._send(500, b"unknown test route", {})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, piece: bytes, seconds: float = DRIP_SECONDS) -> None:
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            self.wfile.write(piece)
            self.wfile.flush()
            time.sleep(0.05)
        self.close_connection = True


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str]] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-request is what most of these tests are about

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def serve(server: RecordingServer) -> Iterator[RecordingServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def module_server() -> Iterator[RecordingServer]:
    yield from serve(RecordingServer())


@pytest.fixture
def server(module_server: RecordingServer) -> RecordingServer:
    module_server.requests.clear()
    return module_server


# --- network guards ---------------------------------------------------------------------


@dataclass
class Network:
    """What the code under test tried to do on the network."""

    connections: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    fake_dns: dict[str, list[list[str]]] = field(default_factory=dict)  # name -> successive answers


def _is_numeric_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)  # the odd IPv4 spellings: "2130706433", "0x7f.0.0.1"
        return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    network = Network()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: object) -> None:
        assert isinstance(address, tuple)
        network.connections.append((str(address[0]), int(address[1])))
        if address[0] != "127.0.0.1":
            raise AssertionError(f"test tried to connect to {address}")
        real_connect(sock, address)

    def guarded_getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        name = host.decode() if isinstance(host, bytes) else str(host)
        network.lookups.append(name)
        if name in network.fake_dns:
            answers = network.fake_dns[name]
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses
            ]
        if not _is_numeric_host(name):
            raise AssertionError(f"test tried a real DNS lookup for {name!r}")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return network


def allow(*hosts: str, **overrides: object) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=frozenset(hosts), **overrides)  # type: ignore[arg-type]


# --- refusals before any connection ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/image.png",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[::1]/image.png",
        "http://[::1]:8080/",
        "http://0177.0.0.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://127.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, IPv4-mapped
        "http://[64:ff9b::a9fe:a9fe]/",  # 169.254.169.254 through NAT64
        "http://[2002:7f00:1::]/",  # 127.0.0.1 through 6to4
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://100.100.100.200/",  # Alibaba Cloud metadata
        "http://192.0.0.192/",  # Oracle Cloud metadata
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://images.localhost/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata/",
    ],
)
def test_non_public_destinations_are_refused_before_connecting(url: str, network: Network) -> None:
    with pytest.raises(FetchError):
        fetch_bytes(url)
    assert network.connections == []


def test_loopback_is_refused_without_allowlist(server: RecordingServer, network: Network) -> None:
    with pytest.raises(FetchError, match="loopback"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/image.png")
    assert network.connections == []
    assert server.requests == []


def test_metadata_host_name_is_refused_without_even_resolving_it(network: Network) -> None:
    with pytest.raises(FetchError):
        fetch_bytes("http://metadata.google.internal/computeMetadata/v1/")
    assert network.lookups == []


def test_host_is_refused_if_any_of_its_addresses_is_private(network: Network) -> None:
    network.fake_dns["images.example"] = [["93.184.216.34", "10.0.0.1"]]
    with pytest.raises(FetchError, match="10.0.0.1"):
        fetch_bytes("http://images.example/cat.jpg")
    assert network.connections == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/image.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "//127.0.0.1/image.png",
        "image.png",
        "http:///image.png",
        "",
    ],
)
def test_only_http_and_https_with_a_host_are_accepted(url: str, network: Network) -> None:
    with pytest.raises(FetchError):
        fetch_bytes(url, allow("127.0.0.1"))
    assert network.connections == []


def test_credentials_in_url_are_refused(server: RecordingServer, network: Network) -> None:
    with pytest.raises(FetchError, match="user name"):
        fetch_bytes(f"http://user:secret@127.0.0.1:{server.port}/image.png", allow("127.0.0.1"))
    with pytest.raises(FetchError):
        fetch_bytes(f"http://127.0.0.1:{server.port}@169.254.169.254/", allow("127.0.0.1"))
    assert network.connections == []


# --- the allowlist ------------------------------------------------------------------------------


def test_allowlisted_host_and_port_is_fetched(server: RecordingServer, network: Network) -> None:
    body = fetch_bytes(f"http://127.0.0.1:{server.port}/image.png", allow(f"127.0.0.1:{server.port}"))

    assert body == PNG
    assert network.connections == [("127.0.0.1", server.port)]
    assert server.requests == [("/image.png", f"127.0.0.1:{server.port}")]


def test_allowlisted_host_without_port_allows_any_port(server: RecordingServer) -> None:
    assert fetch_bytes(f"http://127.0.0.1:{server.port}/image.png", allow("127.0.0.1")) == PNG


def test_allowlisted_host_with_another_port_is_refused(server: RecordingServer, network: Network) -> None:
    with pytest.raises(FetchError):
        fetch_bytes(f"http://127.0.0.1:{server.port}/image.png", allow(f"127.0.0.1:{server.port + 1}"))
    assert network.connections == []


def test_allowlist_names_one_spelling_not_every_address(server: RecordingServer, network: Network) -> None:
    # 2130706433 is 127.0.0.1, but the operator allowed "127.0.0.1", not every way of writing it.
    with pytest.raises(FetchError):
        fetch_bytes(f"http://2130706433:{server.port}/image.png", allow(f"127.0.0.1:{server.port}"))
    assert network.connections == []


def test_relative_redirect_within_allowlisted_host_is_followed(server: RecordingServer) -> None:
    body = fetch_bytes(f"http://127.0.0.1:{server.port}/redirect?to=/image.png", allow(f"127.0.0.1:{server.port}"))
    assert body == PNG
    assert [path for path, _host in server.requests] == ["/redirect", "/image.png"]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/",
        "http://localhost:{port}/image.png",
        "http://127.0.0.1:{other_port}/image.png",
        "file:///etc/passwd",
    ],
)
def test_redirect_from_allowlisted_host_to_a_private_address_is_refused(
    location: str, server: RecordingServer, network: Network
) -> None:
    location = location.format(port=server.port, other_port=server.port + 1)

    with pytest.raises(FetchError):
        fetch_bytes(f"http://127.0.0.1:{server.port}/redirect?to={location}", allow(f"127.0.0.1:{server.port}"))

    assert network.connections == [("127.0.0.1", server.port)]
    assert [path for path, _host in server.requests] == ["/redirect"]


def test_redirects_are_limited(server: RecordingServer) -> None:
    with pytest.raises(FetchError, match="redirects"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/loop", allow("127.0.0.1", max_redirects=3))
    assert len(server.requests) == 4


def test_connection_is_pinned_to_the_checked_address(server: RecordingServer, network: Network) -> None:
    # DNS rebinding: the first answer (the one checked) is allow-listed
    # loopback, every later answer is 10.0.0.1. A client that resolved again
    # when connecting would trip the connect guard.
    network.fake_dns["rebind.test"] = [["127.0.0.1"], ["10.0.0.1"]]

    body = fetch_bytes(f"http://rebind.test:{server.port}/image.png", allow("rebind.test"))

    assert body == PNG
    assert network.lookups.count("rebind.test") == 1
    assert network.connections == [("127.0.0.1", server.port)]
    assert server.requests == [("/image.png", f"rebind.test:{server.port}")]  # the real Host header


# --- responses ------------------------------------------------------------------------------------


def test_error_status_is_refused(server: RecordingServer) -> None:
    with pytest.raises(FetchError, match="404"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/missing", allow("127.0.0.1"))


def test_declared_oversize_body_is_refused(server: RecordingServer) -> None:
    with pytest.raises(FetchError, match="limit"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/big", allow("127.0.0.1", max_bytes=1000))
    assert fetch_bytes(f"http://127.0.0.1:{server.port}/big", allow("127.0.0.1", max_bytes=5000)) == bytes(5000)


def test_declared_oversize_body_is_refused_before_reading_it(server: RecordingServer) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="limit"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/declared-huge", allow("127.0.0.1", timeout_seconds=2.0))
    assert time.monotonic() - started < 1.0


def test_undeclared_oversize_body_is_refused_while_streaming(server: RecordingServer) -> None:
    with pytest.raises(FetchError, match="limit"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/big-unannounced", allow("127.0.0.1", max_bytes=1000))


def test_compressed_body_is_refused(server: RecordingServer) -> None:
    with pytest.raises(FetchError, match="gzip"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/gzip", allow("127.0.0.1"))


@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_slow_drip_server_is_cut_off_at_the_deadline(path: str, server: RecordingServer) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="longer than"):
        fetch_bytes(f"http://127.0.0.1:{server.port}{path}", allow("127.0.0.1", timeout_seconds=0.5))
    assert time.monotonic() - started < 1.0


def test_a_stall_after_some_data_still_ends_at_the_deadline(server: RecordingServer) -> None:
    # The stall begins 0.6 s in; a per-read timeout of the full second would end the call at ~1.6 s.
    started = time.monotonic()
    with pytest.raises(FetchError, match="longer than"):
        fetch_bytes(f"http://127.0.0.1:{server.port}/drip-then-stall", allow("127.0.0.1", timeout_seconds=1.0))
    assert time.monotonic() - started < 1.4


def test_proxy_settings_from_the_environment_are_ignored(
    server: RecordingServer, network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would carry the request past the address checks (and nothing listens on port 9).
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert fetch_bytes(f"http://127.0.0.1:{server.port}/image.png", allow("127.0.0.1")) == PNG
    assert network.connections == [("127.0.0.1", server.port)]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("192.0.0.192", "IETF protocol"),
        ("::", "unspecified"),
        ("fd12::1", "private"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
def test_refusal_says_which_kind_of_address_it_was(address: str, reason: str, network: Network) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchError, match=reason):
        fetch_bytes(f"http://{host}/")
    assert network.connections == []


# --- TLS: certificate checked against the hostname while connecting to the checked IP -------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=pinned.example",
         "-addext", "subjectAltName=DNS:pinned.example"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[RecordingServer]:
    cert, key = tls_files
    server = RecordingServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from serve(server)


def test_https_verifies_the_certificate_for_the_hostname_not_the_ip(
    tls_server: RecordingServer, tls_files: tuple[Path, Path], network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # trust our test certificate
    network.fake_dns["pinned.example"] = [["127.0.0.1"]]

    body = fetch_bytes(f"https://pinned.example:{tls_server.port}/image.png", allow("pinned.example"))

    assert body == PNG
    assert network.connections == [("127.0.0.1", tls_server.port)]
    # The certificate names pinned.example, not 127.0.0.1: verification is on and uses the name.
    with pytest.raises(FetchError):
        fetch_bytes(f"https://127.0.0.1:{tls_server.port}/image.png", allow("127.0.0.1"))


def test_https_refuses_an_untrusted_certificate(
    tls_server: RecordingServer, network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    network.fake_dns["pinned.example"] = [["127.0.0.1"]]
    with pytest.raises(FetchError):
        fetch_bytes(f"https://pinned.example:{tls_server.port}/image.png", allow("pinned.example"))
