"""Run a command over an OpenSSH master connection's control socket, without an ssh client.

Every remote operation of an ``ssh://`` host used to start one ``ssh`` client process that
only connected to the host's master connection (``ControlMaster``) and relayed its bytes:
~4 ms of CPU each, hundreds per run. This module speaks the master's side-channel itself
(OpenSSH's ``PROTOCOL.mux``, version 4, stable since OpenSSH 5.x), as a "passenger"
client: it asks for a new session with the command, hands the master its stdin (``/dev/null``),
stdout and stderr (pipes) as file descriptors over the Unix socket, and reads the output and
the exit status. The master does the ssh work; host keys, authentication and keep-alives were
settled when the master connected.

The ssh client stays the way in: the first operation on a host (and any operation when the
master is gone, refuses, or speaks another version) goes through ``ssh``, which makes the
master; :class:`Unavailable` says "use the client". A session that opened and then lost its
master ends with exit status 255, as ``ssh`` does.

>>> Unavailable.__mro__[1].__name__
'OSError'
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import time

#: protocol constants from OpenSSH's mux.c
MUX_MSG_HELLO = 0x00000001
MUX_C_NEW_SESSION = 0x10000002
MUX_S_OK = 0x80000001
MUX_S_PERMISSION_DENIED = 0x80000002
MUX_S_FAILURE = 0x80000003
MUX_S_EXIT_MESSAGE = 0x80000004
MUX_S_SESSION_OPENED = 0x80000006
MUX_S_TTY_ALLOC_FAIL = 0x80000008
PROTOCOL_VERSION = 4
NO_ESCAPE_CHAR = 0xFFFFFFFF
#: seconds the master has to greet and to open the session (it answers at once when healthy)
OPEN_TIMEOUT_S = 10.0
#: the largest control message accepted from the master (its messages are a few bytes)
MAX_MESSAGE = 256 * 1024
#: exit status when the session ended without one (what ssh itself returns then)
NO_EXIT_STATUS = 255
#: bytes accepted on each of a command's streams: opsgate's remote commands bound their own
#: output far below this (16 MiB at most); a host sending more ignores those bounds
STREAM_LIMIT = 64 << 20


class Unavailable(OSError):
    """The master cannot take the session (no socket, refused, another protocol): use ``ssh``."""


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _packet(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return struct.pack(">I", len(body)) + body


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def new_session_request(command: str, env: list[str], request_id: int = 0) -> bytes:
    """The MUX_C_NEW_SESSION packet for ``command``: no tty, no X11, no agent, no escape char.

    >>> new_session_request("true", ["LANG=C"]).hex()[:24]
    '000000361000000200000000'
    """
    return _packet(_u32(MUX_C_NEW_SESSION), _u32(request_id), _string(b""),  # reserved
                   _u32(0), _u32(0), _u32(0), _u32(0),  # tty, X11, agent, subsystem
                   _u32(NO_ESCAPE_CHAR), _string(b""),  # escape char, terminal type
                   _string(command.encode("utf-8", "surrogateescape")),
                   *(_string(e.encode("utf-8", "surrogateescape")) for e in env))


class _Reader:
    """Length-prefixed messages from the control socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.closed = False

    def feed(self) -> bool:
        """Read what is there; False at end of stream."""
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        if len(self.buffer) > MAX_MESSAGE + 4:
            raise OSError("the ssh master sent an oversized control message")
        return True

    def message(self) -> tuple[int, bytes] | None:
        """The next whole message (type, body), or None until more arrives."""
        if len(self.buffer) < 4:
            return None
        (length,) = struct.unpack(">I", self.buffer[:4])
        if length < 4 or length > MAX_MESSAGE:
            raise OSError(f"the ssh master sent a control message of {length} bytes")
        if len(self.buffer) < 4 + length:
            return None
        body, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
        return struct.unpack(">I", body[:4])[0], body[4:]

    def wait_message(self, deadline: float) -> tuple[int, bytes]:
        while (msg := self.message()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable("the ssh master did not answer")
            self.sock.settimeout(left)
            try:
                if not self.feed():
                    raise Unavailable("the ssh master closed the control connection")
            except socket.timeout:
                raise Unavailable("the ssh master did not answer") from None
        return msg


def _error_text(body: bytes) -> str:
    # after the client request id: a string with the reason
    if len(body) >= 8:
        (n,) = struct.unpack(">I", body[4:8])
        return body[8:8 + n].decode("utf-8", "replace")
    return ""


def run(control_path: str, command: str, env: list[str] | None = None) -> tuple[int, bytes, bytes]:
    """Run ``command`` (a shell command line, as ``ssh host COMMAND`` sends it) over the master
    listening on ``control_path``; return (exit status, stdout, stderr). Raises
    :class:`Unavailable` before the session opened (nothing ran: the caller uses ``ssh``).
    Waits until the session ends, as ``ssh`` would (the far side's ``timeout`` and the master's
    keep-alives bound it; the caller bounds its own wait).

    >>> run("/nonexistent/socket", "true")
    Traceback (most recent call last):
    ...
    opsgate.targets.sshmux.Unavailable: no ssh master at /nonexistent/socket: [Errno 2] No such file or directory
    """
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fds: list[int] = []
    try:
        try:
            sock.settimeout(OPEN_TIMEOUT_S)
            sock.connect(control_path)
            sock.sendall(_packet(_u32(MUX_MSG_HELLO), _u32(PROTOCOL_VERSION)))
        except OSError as exc:
            raise Unavailable(f"no ssh master at {control_path}: {exc}") from None
        reader = _Reader(sock)
        kind, body = reader.wait_message(deadline)
        if kind != MUX_MSG_HELLO or len(body) < 4 or struct.unpack(">I", body[:4])[0] != PROTOCOL_VERSION:
            raise Unavailable("the ssh master speaks another control protocol")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds += [out_r, out_w, err_r, err_w]
        null = os.open(os.devnull, os.O_RDONLY)
        fds.append(null)
        try:
            sock.sendall(new_session_request(command, env or []))
            for fd in (null, out_w, err_w):  # stdin, stdout, stderr, in that order
                socket.send_fds(sock, [b"\0"], [fd])
        except OSError as exc:
            raise Unavailable(f"the ssh master did not take the session: {exc}") from None
        for fd in (null, out_w, err_w):  # the master holds its own copies now
            os.close(fd)
            fds.remove(fd)
        kind, body = reader.wait_message(deadline)
        if kind in (MUX_S_PERMISSION_DENIED, MUX_S_FAILURE):
            raise Unavailable(f"the ssh master refused the session: {_error_text(body)[:200]}")
        if kind != MUX_S_SESSION_OPENED or len(body) < 8:
            raise Unavailable(f"the ssh master answered 0x{kind:08x} to a session request")
        session = struct.unpack(">I", body[4:8])[0]
        return _relay(sock, reader, out_r, err_r, session)
    finally:
        sock.close()
        for fd in fds:
            os.close(fd)


class TooMuchOutput(OSError):
    """The far side sent more than a stream's limit (a host ignoring the bounds its commands
    carry, or one that is hostile): the session is ended, nothing it sent is judged."""


def collect(out_r: int, err_r: int, limit: int = STREAM_LIMIT, control: socket.socket | None = None,
            on_control=None) -> tuple[bytes, bytes]:
    """Read ``out_r`` and ``err_r`` (and ``control``, handing what arrives to ``on_control``;
    it returns False at the control stream's end) until all end; TooMuchOutput once a stream
    passes ``limit`` bytes (the caller then ends the session by closing its side).

    >>> r1, w1 = os.pipe(); r2, w2 = os.pipe()
    >>> _ = os.write(w1, b"out"); _ = os.write(w2, b"x" * 10); os.close(w1); os.close(w2)
    >>> collect(r1, r2, limit=5)
    Traceback (most recent call last):
    ...
    opsgate.targets.sshmux.TooMuchOutput: the host sent more than 5 bytes on stderr
    """
    out, err = bytearray(), bytearray()
    streams = {out_r: (out, "stdout"), err_r: (err, "stderr")}
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        if control is not None:
            selector.register(control, selectors.EVENT_READ)
        open_ = len(selector.get_map())
        while open_:
            for key, _ in selector.select():
                if key.fileobj is control:
                    if not on_control():
                        selector.unregister(control)
                        open_ -= 1
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                    open_ -= 1
                    continue
                buffer, name = streams[key.fd]
                buffer += chunk
                if len(buffer) > limit:
                    raise TooMuchOutput(f"the host sent more than {limit} bytes on {name}")
    return bytes(out), bytes(err)


def _relay(sock: socket.socket, reader: _Reader, out_r: int, err_r: int, session: int) -> tuple[int, bytes, bytes]:
    """Collect stdout and stderr until both end and the master closed the control connection
    (it writes the exit status first; closing early would end the session early)."""
    sock.settimeout(None)
    sock.setblocking(False)
    said: list[bytes] = []
    status: list[int] = []

    def on_control() -> bool:
        try:
            more = reader.feed()
        except BlockingIOError:
            return True
        while (msg := reader.message()) is not None:
            kind, body = msg
            if kind == MUX_S_EXIT_MESSAGE and len(body) >= 8 and struct.unpack(">I", body[:4])[0] == session:
                status.append(struct.unpack(">I", body[4:8])[0])
            elif kind != MUX_S_TTY_ALLOC_FAIL:
                said.append(f"opsgate: the ssh master said 0x{kind:08x}: {_error_text(b'    ' + body)[:200]}\n".encode())
        return more

    out, err = collect(out_r, err_r, control=sock, on_control=on_control)
    err += b"".join(said)
    if not status:
        err += b"opsgate: the ssh master connection ended the session without an exit status\n"
        return NO_EXIT_STATUS, out, err
    return status[0], out, err
