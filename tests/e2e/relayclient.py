"""A client of the TCP Relay protocol, written from the seed's description
(../shared/seeds/004_*.txt), for the black-box tests of `sockjoin relay`.

    register:  NAME|                      within the registration timeout
    send:      DEST|N|<N bytes>           N in ASCII decimal
    keep-alive NAME|0|                    to oneself; not delivered
    receive:   SENDER|N|<N bytes>         (the seed's later test client)

Received frames are parsed incrementally from a buffer, so frames split
across reads or many in one read are both handled. Every wait has a
deadline.
"""

import hashlib
import socket
import time

from conftest import DEADLINE, connect_tcp


class RelayClosed(AssertionError):
    """The relay closed the connection while a frame was expected."""


class RelayClient:
    def __init__(self, addr, name=None, timeout=DEADLINE, rcvbuf=None, sndbuf=None):
        self.sock = connect_tcp(addr, timeout=timeout, rcvbuf=rcvbuf, sndbuf=sndbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.name = None
        if name is not None:
            self.register(name)

    # -- sending -------------------------------------------------------------
    def register(self, name):
        self.name = name.encode() if isinstance(name, str) else name
        self.sock.sendall(self.name + b"|")

    @staticmethod
    def frame(dest, payload):
        dest = dest.encode() if isinstance(dest, str) else dest
        return dest + b"|" + str(len(payload)).encode() + b"|" + payload

    def send(self, dest, payload):
        self.sock.sendall(self.frame(dest, payload))

    def keepalive(self):
        self.sock.sendall(self.name + b"|0|")

    def send_raw(self, data):
        self.sock.sendall(data)

    # -- receiving -----------------------------------------------------------
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("relay client %r: timed out with %d bytes buffered: %r"
                                 % (self.name, len(self.buf), bytes(self.buf[:100])))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        if not data:
            raise RelayClosed("relay client %r: connection closed with %d bytes buffered: %r"
                              % (self.name, len(self.buf), bytes(self.buf[:100])))
        self.buf += data

    def _field(self, start, deadline, limit):
        """Index of the '|' that ends the field starting at start."""
        while True:
            i = self.buf.find(b"|", start)
            if i >= 0:
                return i
            assert len(self.buf) - start <= limit, "field longer than %d bytes: %r" % (
                limit, bytes(self.buf[start:start + 100]))
            self._fill(deadline)

    def recv_header(self, timeout=DEADLINE):
        """Reads 'SENDER|N|' and returns (sender, N); the payload stays."""
        deadline = time.monotonic() + timeout
        i = self._field(0, deadline, 255)
        j = self._field(i + 1, deadline, 20)
        sender, length = bytes(self.buf[:i]), bytes(self.buf[i + 1:j])
        assert sender, "empty sender in %r" % bytes(self.buf[:j + 1])
        assert length.isdigit(), "bad length in %r" % bytes(self.buf[:j + 1])
        del self.buf[:j + 1]
        return sender, int(length)

    def recv_bytes(self, n, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def recv_message(self, timeout=DEADLINE):
        """One delivered frame: (sender, payload)."""
        deadline = time.monotonic() + timeout
        sender, n = self.recv_header(timeout)
        return sender, self.recv_bytes(n, max(0.0, deadline - time.monotonic()))

    def recv_message_hash(self, timeout=DEADLINE):
        """One delivered frame, its payload hashed as it streams in:
        (sender, length, sha256 hexdigest)."""
        deadline = time.monotonic() + timeout
        sender, n = self.recv_header(timeout)
        h = hashlib.sha256()
        left = n
        while left > 0:
            if not self.buf:
                self._fill(deadline)
                continue
            take = min(left, len(self.buf))
            h.update(self.buf[:take])
            del self.buf[:take]
            left -= take
        return sender, n, h.hexdigest()

    def expect_closed(self, timeout=DEADLINE):
        """Waits until the relay closes the connection; returns what arrived
        before (buffered bytes included)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except RelayClosed:
                data, self.buf = bytes(self.buf), bytearray()
                return data
            except (ConnectionResetError, BrokenPipeError):
                data, self.buf = bytes(self.buf), bytearray()
                return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
