"""Webhook receivers that misbehave at the socket level, for the wall-clock bound of a delivery
attempt: real TCP (and TLS) servers on 127.0.0.1, one thread per connection.

Modes (``receiver.mode``, changeable at any time; a connection keeps the mode it started with):

- ``ok``: answers 200 with a 2-byte body at once;
- ``body``: answers ``200 OK`` with ``Content-Length: 100000000`` and then one byte every
  ``interval`` seconds (the shape that once held a delivery for ever);
- ``headers``: sends its status line and headers one byte every ``interval`` seconds;
- ``silent``: reads the request and never answers, never closes.

Each connection records when it was opened, the request it carried, and when the client shut it
(the next write failing), so a test can see that the attempt really hung up.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ANSWER_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
HUGE_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\nContent-Type: application/json\r\n\r\n"


@dataclass
class Connection:
    opened_at: float  # time.monotonic()
    mode: str
    head: bytes = b""
    body: bytes = b""
    closed_by_client_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    opened_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_wall: datetime | None = None  # when this side saw the connection end, however it ended

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":" in line)}


class TricklingReceiver:
    def __init__(self, mode: str = "body", interval: float = 0.5, tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.interval = interval
        self.tls = tls
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TricklingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._server.close()

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def seen(self) -> list[Connection]:
        with self._lock:
            return list(self.connections)

    def in_flight(self) -> list[Connection]:
        """Connections that carried a request and are still held open by the client."""
        return [c for c in self.seen() if c.head and c.closed_by_client_at is None and not c.done.is_set()]

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = Connection(time.monotonic(), self.mode)
            with self._lock:
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(sock, conn), daemon=True).start()

    def _serve(self, raw: socket.socket, conn: Connection) -> None:
        sock: socket.socket = raw
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(raw, server_side=True)
            sock.settimeout(30)
            self._read_request(sock, conn)
            if conn.mode == "ok":
                sock.sendall(ANSWER_OK)
            elif conn.mode == "silent":
                self._stopping.wait(300)
            else:
                pending = HUGE_HEADERS if conn.mode == "headers" else b""
                if conn.mode == "body":
                    sock.sendall(HUGE_HEADERS)
                while not self._stopping.wait(self.interval):
                    byte, pending = (pending[:1], pending[1:]) if pending else (b"x", b"")
                    sock.sendall(byte)
        except OSError:
            conn.closed_by_client_at = time.monotonic()
        finally:
            conn.ended_wall = datetime.now(UTC)
            conn.done.set()
            try:
                sock.close()
            except OSError:
                pass

    @staticmethod
    def _read_request(sock: socket.socket, conn: Connection) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the client closed before sending a request")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        conn.head = head
        length = int(conn.headers.get("Content-Length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        conn.body = rest


def self_signed_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 made by openssl, and the certificate's
    path (for REQUESTS_CA_BUNDLE)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert
