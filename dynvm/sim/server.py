"""HTTP(S) listeners: one per simulated host, plus small helpers shared with
the control endpoint.

Threaded (one thread per connection) with HTTP/1.1 keep-alive, so a long
clone or a blocked `event.from` never holds up other callers.  A listener can
be closed and reopened on the same port, which is how "unreachable" and host
reboots look to a client: connection refused. A listener given `on_put`
also takes HTTP PUTs (XAPI's upload handlers, such as `/import_raw_vdi`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RPC_PATHS = frozenset({"/", "/RPC2"})
MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Put:
    """One HTTP PUT: `body` is None when it came chunked (not read: XAPI refuses it)."""

    path: str  # with the query string
    headers: Mapping[str, str]
    body: bytes | None
    secure: bool  # over TLS


@dataclass(frozen=True)
class Reply:
    code: int
    headers: Mapping[str, str]
    body: bytes = b""


class _Tracking(socketserver.ThreadingMixIn, socketserver.BaseServer):
    """Connection tracking shared by the TCP and the Unix socket servers, so
    that closing a listener also drops the connections it has open."""

    daemon_threads = True
    listener: Listener
    closing: bool
    connections: set[socket.socket]
    conn_lock: threading.Lock

    def _track(self, listener: Listener) -> None:
        self.listener = listener
        self.closing = False
        self.connections = set()
        self.conn_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: object) -> None:
        # Clients hanging up (timeouts, resets, failed TLS handshakes) are normal here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return
        super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: object) -> None:
        with self.conn_lock:
            closing = self.closing
            if not closing:
                self.connections.add(request)
        if closing:  # outside the lock: shutdown_request ends in close_request, which takes it
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def close_request(self, request: Any) -> None:
        with self.conn_lock:
            self.connections.discard(request)
        super().close_request(request)

    def drop_connections(self) -> None:
        with self.conn_lock:
            self.closing = True
            conns = list(self.connections)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(_Tracking, ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler_cls: type, listener: Listener) -> None:
        self._track(listener)
        super().__init__(addr, handler_cls)

    def server_bind(self) -> None:
        # A plain bind (HTTPServer.server_bind does a slow reverse DNS lookup).
        if self.allow_reuse_address:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]


class _UnixServer(_Tracking, socketserver.UnixStreamServer):
    """HTTP over a Unix domain socket, as xapi serves local clients in dom0."""

    request_queue_size = 128

    def __init__(self, path: str, handler_cls: type, listener: Listener) -> None:
        self._track(listener)
        super().__init__(path, handler_cls)


class _RpcHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xapi"
    sys_version = ""
    server: _Server | _UnixServer

    def log_message(self, format: str, *args: object) -> None:  # an override
        pass

    def setup(self) -> None:
        super().setup()
        if self.connection.family != socket.AF_UNIX:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(10)
            self.connection.do_handshake()
            self.connection.settimeout(None)

    def _send(self, code: int, body: bytes, ctype: str = "text/xml") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self._send(413, b"")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if self.server.closing:
            self.close_connection = True
            return
        listener = self.server.listener
        out = listener.on_request(self.command, self.path, body)
        if out is None:
            self._send(500, b"", "text/plain")
            return
        code, payload, ctype = out
        self._send(code, payload, ctype)

    def do_PUT(self) -> None:  # http.server naming
        listener = self.server.listener
        if listener.on_put is None:
            self._send(405, b"", "text/plain")
            return
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        if not chunked and (length < 0 or length > MAX_BODY):
            self._send(413, b"", "text/plain")
            self.close_connection = True
            return
        body = None if chunked else self.rfile.read(length)
        reply = listener.on_put(Put(self.path, dict(self.headers.items()), body,
                                    isinstance(self.connection, ssl.SSLSocket)))
        self.send_response(reply.code)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        self.close_connection = True  # as XAPI's handlers answer (keep_alive false)

    def do_GET(self) -> None:
        out = self.server.listener.on_request("GET", self.path, b"")
        if out is None:
            self._send(405, b"", "text/plain")
            return
        code, payload, ctype = out
        self._send(code, payload, ctype)


RequestFn = Callable[[str, str, bytes], "tuple[int, bytes, str] | None"]
PutFn = Callable[[Put], Reply]


class Listener:
    """A closable, reopenable HTTP(S) server on a fixed (bind, port), or
    plain HTTP on a Unix socket at `unix_path`."""

    def __init__(self, bind: str, port: int, on_request: RequestFn,
                 ssl_context: ssl.SSLContext | None = None, name: str = "listener",
                 unix_path: str | None = None, on_put: PutFn | None = None) -> None:
        self.bind = bind
        self.port = port
        self.unix_path = unix_path
        self.on_request = on_request
        self.on_put = on_put
        self.ssl_context = ssl_context
        self.name = name
        self._server: _Server | _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._wake: socket.socket | None = None  # a byte on it stops the serving loop
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            srv: _Server | _UnixServer
            if self.unix_path is not None:
                if os.path.exists(self.unix_path):
                    os.unlink(self.unix_path)  # a socket left by a process that died
                srv = _UnixServer(self.unix_path, _RpcHandler, self)
            else:
                srv = _Server((self.bind, self.port), _RpcHandler, self)
                if self.ssl_context is not None:
                    srv.socket = self.ssl_context.wrap_socket(
                        srv.socket, server_side=True, do_handshake_on_connect=False)
                self.port = srv.server_address[1]
            self._server = srv
            stop, self._wake = socket.socketpair()
            self._thread = threading.Thread(target=_serve, args=(srv, stop),
                                            name=f"sim {self.name}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop accepting (connections are then refused) and drop open ones."""
        with self._lock:
            srv, self._server = self._server, None
            thread, self._thread = self._thread, None
            wake, self._wake = self._wake, None
        if srv is None:
            return
        srv.drop_connections()
        if wake is not None:
            with wake:
                wake.send(b"x")
        if thread is not None:
            thread.join(timeout=5)
        srv.server_close()
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)


def _serve(srv: _Server | _UnixServer, stop: socket.socket) -> None:
    """Accept connections until a byte arrives on `stop`.

    `serve_forever` would notice a shutdown only at its next poll tick, which
    every close (a reboot, an unreachable host, every farm's stop) waited for.
    """
    with stop, selectors.DefaultSelector() as sel:
        sel.register(srv, selectors.EVENT_READ)
        sel.register(stop, selectors.EVENT_READ)
        while True:
            if any(key.fileobj is stop for key, _ in sel.select()):
                return
            srv.handle_request()  # the listening socket is readable: it accepts at once


def close_all(listeners: list[Listener]) -> None:
    """Close many listeners in parallel (each drops its open connections)."""
    threads = [threading.Thread(target=lst.close, daemon=True) for lst in listeners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
