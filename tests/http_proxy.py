"""A small real HTTP proxy for tests: it forwards to a live server, and may answer otherwise on the way.

    with Proxy(upstream, rule) as proxy:     # proxy.endpoint: http://127.0.0.1:PORT
        ...

``rule(number, method, path)`` sees each request (numbered from 1) and returns what to do with it:
``FORWARD``; ``(status, headers)`` to answer that instead of forwarding; ``DROP`` to close the
connection without an answer (a network failure); or ``HOLD``: forward it, let the upstream server
do the work, then never answer (``proxy.held`` is set), as when a client dies waiting.
The client's Host header is passed on, so a server's absolute links point back at the proxy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Union

import httpx

FORWARD, DROP, HOLD = "forward", "drop", "hold"
Action = Union[str, tuple[int, dict[str, str]]]
Rule = Callable[[int, str, str], Action]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "te", "trailer",
               "upgrade", "proxy-connection"}


class Proxy:
    def __init__(self, upstream: str, rule: Rule) -> None:
        self.upstream = upstream.rstrip("/")
        self.rule = rule
        self.count = 0
        self.answered: dict[int, int] = {}  # status -> how many times the proxy answered it itself
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=120)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _next(self, method: str, path: str) -> Action:
        with self._lock:
            self.count += 1
            return self.rule(self.count, method, path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy._next(self.command, self.path)
                if action == DROP:
                    self.close_connection = True
                    return
                if isinstance(action, tuple):
                    status, headers = action
                    with proxy._lock:
                        proxy.answered[status] = proxy.answered.get(status, 0) + 1
                    self._answer(status, {"Content-Type": "application/json", **headers}, b'{"code": "ProxyRefused", "message": "answered by the test proxy"}')
                    return
                headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
                answer = proxy._http.request(self.command, proxy.upstream + self.path, headers=headers, content=body)
                if action == HOLD:
                    proxy.held.set()
                    proxy._release.wait()
                    self.close_connection = True
                    return
                kept = {name: value for name, value in answer.headers.items() if name.lower() not in _HOP_BY_HOP}
                self._answer(answer.status_code, kept, answer.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle  # noqa: N815 - http.server's names

        return Handler
