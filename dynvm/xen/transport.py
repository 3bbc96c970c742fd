"""XML-RPC transports with separate connect and call timeouts and a real TLS context.

`xmlrpc.client` only knows one socket timeout (or none: a hung XAPI would
block a worker forever). We connect (and do the TLS handshake) under the
connect timeout, then switch the socket to the call timeout, which the owner
may change between calls (the event feed long-polls for longer than an
ordinary call may take).
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import xmlrpc.client
from urllib.parse import urlsplit

from dynvm.config import HostConfig

log = logging.getLogger(__name__)

_warned_unverified: set[str] = set()
_warn_lock = threading.Lock()


def _warn_unverified_once(name: str) -> None:
    with _warn_lock:
        if name in _warned_unverified:
            return
        _warned_unverified.add(name)
    log.warning("TLS certificate verification is off for %s (host.tls.verify=false)", name)


def ssl_context(host: HostConfig) -> ssl.SSLContext:
    """Verifying context (host.ca_file or the system store), or an unverified one."""
    if not host.verify_tls:
        _warn_unverified_once(host.name)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=host.ca_file) if host.ca_file \
        else ssl.create_default_context()


class _TimedConnectMixin:
    """Connect (and handshake) under `connect_timeout`, then use the call timeout."""

    connect_timeout: float
    timeout: float | None
    sock: socket.socket | None

    def _timed_create(self, address, timeout=None, source_address=None):
        return socket.create_connection(address, self.connect_timeout, source_address)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.sock is not None:
            self.sock.settimeout(self.timeout)


class TimedHTTPConnection(_TimedConnectMixin, http.client.HTTPConnection):
    def __init__(self, host: str, *, connect_timeout: float, call_timeout: float) -> None:
        super().__init__(host, timeout=call_timeout)
        self.connect_timeout = connect_timeout
        self._create_connection = self._timed_create


class TimedHTTPSConnection(_TimedConnectMixin, http.client.HTTPSConnection):
    def __init__(self, host: str, *, connect_timeout: float, call_timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, timeout=call_timeout, context=context)
        self.connect_timeout = connect_timeout
        self._create_connection = self._timed_create


class TimeoutTransport(xmlrpc.client.Transport):
    """Plain-HTTP transport; keeps one HTTP/1.1 keep-alive connection."""

    def __init__(self, connect_timeout: float, call_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.aborted = False

    def abort(self) -> None:
        """Break a call blocked in another thread, and refuse any later one.

        Shutting the socket down wakes a pending recv; the flag stops
        xmlrpc's one automatic retry on a fresh connection.
        """
        self.aborted = True
        conn = self._connection[1]
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _new_connection(self, chost: str) -> http.client.HTTPConnection:
        return TimedHTTPConnection(chost, connect_timeout=self.connect_timeout,
                                   call_timeout=self.call_timeout)

    def make_connection(self, host):  # xmlrpc signature
        if self.aborted:
            raise ConnectionAbortedError("transport closed")
        if self._connection and host == self._connection[0]:
            conn = self._connection[1]
            conn.timeout = self.call_timeout
            if conn.sock is not None:
                conn.sock.settimeout(self.call_timeout)
            return conn
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        self._connection = host, self._new_connection(chost)
        return self._connection[1]


class SafeTimeoutTransport(TimeoutTransport):
    """HTTPS transport with an explicit `ssl.SSLContext`."""

    def __init__(self, connect_timeout: float, call_timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(connect_timeout, call_timeout)
        self.context = context

    def _new_connection(self, chost: str) -> http.client.HTTPConnection:
        return TimedHTTPSConnection(chost, connect_timeout=self.connect_timeout,
                                    call_timeout=self.call_timeout, context=self.context)


def make_transport(host: HostConfig, url: str, *,
                   call_timeout: float | None = None) -> TimeoutTransport:
    """The transport for `url` (which may be a followed pool master, not host.url)."""
    timeout = host.call_timeout if call_timeout is None else call_timeout
    if urlsplit(url).scheme == "https":
        return SafeTimeoutTransport(host.connect_timeout, timeout, ssl_context(host))
    return TimeoutTransport(host.connect_timeout, timeout)
