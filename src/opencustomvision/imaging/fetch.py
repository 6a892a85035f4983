"""Download an image from a user-supplied URL without exposing the server's own network.

"Create images from URLs" lets any API caller make this server send a GET
request. Without care that is server-side request forgery: the caller could
read the cloud metadata service (169.254.169.254), an admin port on
localhost, or anything else on the private network. So every hop, redirects
included, is checked here before a single packet is sent:

* only http/https, no credentials in the URL;
* the host is resolved here, and refused if ANY of its addresses is not
  publicly routable, unless the operator allow-listed it;
* the connection is pinned to the addresses that were checked (see
  `_PinnedNetworkBackend`), so a DNS answer that changes between the check
  and the connect (DNS rebinding) cannot redirect it;
* the body is size-limited and the whole call has a wall-clock deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpcore
import httpx

__all__ = ["FetchError", "FetchPolicy", "fetch_bytes"]


class FetchError(Exception):
    """The URL could not be fetched; the message says why."""


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 6 * 1024 * 1024
    timeout_seconds: float = 10.0  # for the whole call, redirects included
    max_redirects: int = 5
    # Hostnames or IP literals that may be private or loopback (OCV_URL_ALLOWLIST).
    # "127.0.0.1:8123" allows one port, "127.0.0.1" any port; IPv6 as "[::1]:8123".
    allowed_hosts: frozenset[str] = frozenset()


_DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_REQUEST_HEADERS = {
    "Accept": "image/*",
    # Compressed bodies would make the byte limit meaningless (a small gzip
    # stream can inflate to gigabytes), so ask for none and refuse any.
    "Accept-Encoding": "identity",
    "User-Agent": "OpenCustomVision image fetcher",
}

# Names of cloud metadata services, refused before they are even resolved.
_METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# RFC 6761 localhost, the ICANN private-use .internal and mDNS .local: never
# public, and resolving .local would itself send multicast traffic.
_PRIVATE_NAME_SUFFIXES = ("localhost", ".localhost", ".internal", ".local")

# What the `ipaddress` properties do not cover (or, depending on the Python
# patch release, only partly cover).
_NON_PUBLIC_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "'this network'"),
    (ipaddress.ip_network("100.64.0.0/10"), "carrier-grade NAT"),  # also Alibaba's metadata service
    (ipaddress.ip_network("192.0.0.0/24"), "IETF protocol"),  # also Oracle's metadata service
    (ipaddress.ip_network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.ip_network("fec0::/10"), "site-local"),
)
_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def fetch_bytes(url: str, policy: FetchPolicy = FetchPolicy()) -> bytes:
    """GET `url` and return the body, following redirects; raise FetchError on anything unsafe or failed."""
    deadline = time.monotonic() + policy.timeout_seconds
    current = _parse_url(url)

    for _hop in range(policy.max_redirects + 1):
        target = _check_destination(current, policy)
        try:
            with _pinned_client(target, policy, deadline) as client:
                request = client.build_request("GET", current, headers=_REQUEST_HEADERS)
                response = client.send(request, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECT_STATUSES and location:
                        current = _redirect_target(current, location)
                        continue
                    if not response.is_success:
                        raise FetchError(f"{_display(current)} answered HTTP {response.status_code}")
                    return _read_body(response, policy.max_bytes)
                finally:
                    response.close()
        except httpcore.TimeoutException as exc:
            raise FetchError(
                f"fetching {_display(current)} took longer than {policy.timeout_seconds:g} s"
            ) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpx.HTTPError) as exc:
            raise FetchError(f"could not fetch {_display(current)}: {exc}") from exc

    raise FetchError(f"more than {policy.max_redirects} redirects")


@dataclass(frozen=True)
class _Destination:
    scheme: str
    host: str  # as httpcore will ask for it: lower case, IDNA-encoded, IPv6 without brackets
    port: int
    addresses: tuple[str, ...]  # checked; the only ones we will connect to


def _parse_url(raw: str | httpx.URL) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"invalid URL: {exc}") from exc
    if url.scheme not in _DEFAULT_PORTS:
        raise FetchError(f"only http and https URLs can be fetched, not {url.scheme or 'no scheme'!r}")
    # "http://trusted.example@10.0.0.1/" reads like trusted.example to a human
    # but goes to 10.0.0.1; and credentials have no business in this request.
    if url.userinfo:
        raise FetchError("URLs with a user name or password are not accepted")
    if not url.raw_host:
        raise FetchError("URL has no host")
    return url


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    try:
        joined = current.join(location)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"invalid redirect location {location!r}") from exc
    return _parse_url(joined)


def _check_destination(url: httpx.URL, policy: FetchPolicy) -> _Destination:
    host = url.raw_host.decode("ascii").lower()
    port = url.port or _DEFAULT_PORTS[url.scheme]
    allowlisted = _is_allowlisted(host, port, policy.allowed_hosts)

    name = host.rstrip(".")
    if not allowlisted and (name in _METADATA_HOSTNAMES or name.endswith(_PRIVATE_NAME_SUFFIXES)):
        raise FetchError(f"{host} is a private host name")

    addresses = _resolve(host, port)
    if not allowlisted:
        for address in addresses:
            reason = _non_public_reason(ipaddress.ip_address(address))
            if reason:
                raise FetchError(f"{host} resolves to {address}, a {reason} address")
    return _Destination(scheme=url.scheme, host=host, port=port, addresses=addresses)


def _is_allowlisted(host: str, port: int, allowed_hosts: Iterable[str]) -> bool:
    allowed = {entry.strip().lower() for entry in allowed_hosts}
    if not allowed:
        return False
    spelled = f"[{host}]" if ":" in host else host
    return not allowed.isdisjoint({host, spelled, f"{spelled}:{port}"})


def _resolve(host: str, port: int) -> tuple[str, ...]:
    # getaddrinfo also normalises odd IPv4 spellings ("2130706433",
    # "0x7f.0.0.1", "0177.0.0.1") into the address that would really be used,
    # which is why the check looks at its answer and never at the URL text.
    # Note: the system resolver has no timeout parameter, so a slow DNS lookup
    # is bounded by the resolver configuration, not by the fetch deadline.
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from exc
    addresses = tuple(
        dict.fromkeys(
            str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)
        )
    )
    if not addresses:
        raise FetchError(f"{host} has no IPv4 or IPv6 address")
    return addresses


def _non_public_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address must not be contacted, or None if it is publicly routable."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 spellings of IPv4 addresses reach the IPv4 address, so judge that.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _non_public_reason(embedded)
        if ip.teredo is not None:
            return "Teredo tunnel"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),  # includes 169.254.169.254, the metadata service
        (ip.is_private, "private"),
        (ip.is_multicast, "multicast"),
        (ip.is_reserved, "reserved"),
    )
    for matches, reason in checks:
        if matches:
            return reason
    for network, reason in _NON_PUBLIC_NETWORKS:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:
        return "non-global"
    return None


def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(f"the server sent a {encoding!r}-compressed body, which is not accepted")

    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"the image is {declared} bytes; the limit is {max_bytes} bytes")

    body = bytearray()
    # Each read is bounded by the call's deadline (see _DeadlineStream), so a
    # server that drips a byte at a time cannot hold this loop past it.
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"the image is larger than the limit of {max_bytes} bytes")
    return bytes(body)


def _display(url: httpx.URL) -> str:
    # Query strings of image URLs often carry access tokens (signed URLs);
    # keep them out of error messages, which end up in API responses and logs.
    return str(url.copy_with(query=None, fragment=None))


# --- pinned transport -------------------------------------------------------
#
# httpx resolves and connects on its own, which would reopen the window
# between our check and the connection. Rather than rewriting the URL to an IP
# literal (and patching Host and SNI back in), the request keeps its real URL
# and the network layer underneath httpcore dials only the checked addresses.
# So Host, SNI and certificate verification all use the real hostname exactly
# as httpx would, and nothing but those addresses can ever be reached. The
# same layer enforces the wall-clock deadline on every connect, TLS handshake,
# read and write, which plain httpx timeouts (per operation) cannot.


def _pinned_client(destination: _Destination, policy: FetchPolicy, deadline: float) -> httpx.Client:
    return httpx.Client(
        transport=_PinnedTransport(destination, deadline),
        timeout=httpx.Timeout(policy.timeout_seconds),
        follow_redirects=False,  # every hop is checked by fetch_bytes
        # A proxy from HTTP(S)_PROXY/ALL_PROXY would carry the request past
        # the address checks. httpx already ignores them when given a
        # transport; saying so here keeps it true if that ever changes.
        trust_env=False,
    )


class _PinnedTransport(httpx.BaseTransport):
    """An httpx transport for one checked destination (one hop)."""

    def __init__(self, destination: _Destination, deadline: float) -> None:
        self._destination = destination
        self._pool = httpcore.ConnectionPool(
            # Loading the CA bundle costs milliseconds; plain http needs none.
            ssl_context=httpx.create_ssl_context() if destination.scheme == "https" else None,
            network_backend=_PinnedNetworkBackend(destination, deadline),
            max_connections=1,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii").lower()
        if host != self._destination.host:
            raise httpcore.ConnectError(f"{host} is not the checked host {self._destination.host}")
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_response = self._pool.handle_request(
            httpcore.Request(
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
        )
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseBody(core_response),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _ResponseBody(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        return self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _PinnedNetworkBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses of one host, and to nothing else."""

    def __init__(self, destination: _Destination, deadline: float) -> None:
        self._destination = destination
        self._deadline = deadline
        self._system = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if (host.lower(), port) != (self._destination.host, self._destination.port):
            raise httpcore.ConnectError(f"refusing to connect to unchecked {host}:{port}")
        last_error: Exception = httpcore.ConnectError(f"{host} has no address")
        # Try each checked address in resolver order, as a browser would: a
        # host whose first answer is an unreachable IPv6 address still works.
        for address in self._destination.addresses:
            try:
                stream = self._system.connect_tcp(
                    address,
                    port,
                    timeout=_within(self._deadline, timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for fetching URLs")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the call's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls_stream = self._stream.start_tls(
            ssl_context, server_hostname, _within(self._deadline, timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls_stream, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


def _within(deadline: float, timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
    """The smaller of an operation's own timeout and the time left before the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        # Not 0: a zero socket timeout means non-blocking, not "already late".
        raise expired("deadline passed")
    return remaining if timeout is None else min(timeout, remaining)
