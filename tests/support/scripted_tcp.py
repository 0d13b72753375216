"""A real loopback TCP server whose every connection runs a script: hostile or broken
servers for the database probes' tests (a Redis that answers garbage, a PostgreSQL that
trickles its greeting).

``ScriptedTcp(handler)`` listens on a free 127.0.0.1 port and calls ``handler(conn)`` on its
own thread per accepted connection; on exit, every connection is closed, so a handler that
blocks forever ends with it. ``RespServer`` is one such script: a Redis that answers each
command from a table of raw RESP replies.

>>> with ScriptedTcp(lambda conn: conn.sendall(b"hello")) as server:
...     with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
...         s.recv(5)
b'hello'
"""

from __future__ import annotations

import socket
import threading
from typing import Callable


class ScriptedTcp:
    def __init__(self, handler: Callable[[socket.socket], None]):
        self.handler = handler
        self.port = 0
        self.stopped = threading.Event()
        self._conns: list[socket.socket] = []

    def __enter__(self) -> "ScriptedTcp":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # a timeout tick, or closed on exit
                continue
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:  # the client went away (as it should, at its timeout)
            pass

    def trickle(self, conn: socket.socket, data: bytes, every: float = 0.2) -> None:
        """Send ``data`` one byte at a time, each well under any probe's timeout, until the
        server stops: a target that never goes silent long enough to time a read out."""
        for byte in data:
            if self.stopped.wait(every):
                return
            conn.sendall(bytes([byte]))

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def read_command(conn: socket.socket, buffer: bytearray) -> list[bytes] | None:
    """One RESP command (an array of bulk strings) from ``conn``; None when it closed."""
    while True:
        parsed = _parse_array(buffer)
        if parsed is not None:
            return parsed
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk


def _parse_array(buffer: bytearray) -> list[bytes] | None:
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    head, _, rest = bytes(buffer).partition(b"\r\n")
    items, at = [], 0
    for _ in range(int(head[1:])):
        line_end = rest.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(rest[at + 1:line_end])
        start = line_end + 2
        if len(rest) < start + size + 2:
            return None
        items.append(rest[start:start + size])
        at = start + size + 2
    del buffer[:len(head) + 2 + at]
    return items


class RespServer(ScriptedTcp):
    """A fake Redis: each command (by its upper-cased name) is answered with ``replies[name]``:
    raw bytes, or a callable ``(server, conn)`` for scripts (trickle, silence, close).
    HELLO is refused as Redis 5 refuses it (RESP2 only); other commands not in the table
    (CLIENT SETNAME, ...) get ``+OK``.

    >>> import redis
    >>> with RespServer({"PING": b"+PONG\\r\\n"}) as fake:
    ...     redis.Redis(port=fake.port, socket_timeout=2, protocol=2).ping()
    True
    """

    def __init__(self, replies: dict[str, bytes | Callable]):
        self.replies = {"HELLO": b"-ERR unknown command 'HELLO'\r\n", **replies}
        super().__init__(self._serve)

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        while not self.stopped.is_set():
            command = read_command(conn, buffer)
            if command is None:
                return
            reply = self.replies.get(command[0].decode().upper(), b"+OK\r\n")
            if callable(reply):
                reply(self, conn)
            else:
                conn.sendall(reply)


def info_reply(fields: dict[str, str]) -> bytes:
    """An INFO answer (a bulk string of ``key:value`` lines) holding ``fields``.

    >>> info_reply({"role": "master"})
    b'$13\\r\\nrole:master\\r\\n\\r\\n'
    """
    text = "".join(f"{k}:{v}\r\n" for k, v in fields.items()).encode()
    return b"$%d\r\n%s\r\n" % (len(text), text)


def silence(server: ScriptedTcp, conn: socket.socket) -> None:
    """Say nothing until the server stops."""
    server.stopped.wait()
