"""Closed-loop HTTP load: `python -m bench.load URL CLIENTS SECONDS` prints JSON figures.

Each client thread keeps one HTTP/1.1 connection (keep-alive) and sends the
next request as soon as the previous answer is read. Bounded in time;
loopback only.

The client shares the machine's cores with the server it measures, so what it
spends per request is taken from the server: it sends one request line it
encoded once and reads the answer by its `Content-Length` on a plain socket
(about a fifth of what `http.client` spends parsing every header into a
message object). Answers must carry a `Content-Length`; one without, or with a
status other than 200, counts as an error.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

TIMEOUT_SECS = 30.0


class Connection:
    """One kept-alive connection that sends the same GET and reads each answer whole."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.addr = (host, port)
        self.request = request
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.addr, timeout=TIMEOUT_SECS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def get(self) -> tuple[int, bytes]:
        """Status and body of one answer; the connection is closed if the server said so."""
        sock = self.sock or self._connect()
        sock.sendall(self.request)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv(sock)
        head, buf = buf[:end].decode("latin-1"), buf[end + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = -1, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        if length < 0:
            raise ConnectionError("an answer without Content-Length")
        while len(buf) < length:
            buf += self._recv(sock)
        body, self.buf = buf[:length], buf[length:]
        if close:
            self.close()
        return status, body

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk


def run(url: str, clients: int, seconds: float) -> dict:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("latin-1")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = Connection(host, port, request)
        start_gate.wait()
        mine = latencies[i]
        while time.monotonic() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                status, _ = conn.get()
                if status != 200:
                    errors[i] += 1
            except (OSError, ValueError, IndexError):
                errors[i] += 1
                conn.close()
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    t0 = time.monotonic()
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(x for per in latencies for x in per)

    def pct(q: float) -> float:
        return lat[min(int(q * len(lat)), len(lat) - 1)] * 1000 if lat else float("nan")

    return {"requests": len(lat), "errors": sum(errors), "seconds": round(elapsed, 2),
            "rps": round(len(lat) / elapsed, 1), "p50_ms": round(pct(0.50), 2),
            "p99_ms": round(pct(0.99), 2)}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
