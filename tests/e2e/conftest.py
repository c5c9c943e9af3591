"""Shared helpers for the sockjoin black-box tests.

Everything here waits for events (a line on stdout/stderr, a socket becoming
readable, a process exiting) with an explicit deadline, so a hung sockjoin
makes a test fail instead of hanging the run.  Deadlines are generous so the
suite also passes against slow (AddressSanitizer) builds.
"""

import contextlib
import hashlib
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("SOCKJOIN_BIN") or os.path.join(REPO, "build", "sockjoin")

# Default deadline for "this should happen soon" waits (generous for ASan).
DEADLINE = float(os.environ.get("SOCKJOIN_TEST_DEADLINE", "25"))

# Regex for the ISO-8601 UTC timestamp at the start of verbose lines.
ISO_RE = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]00:?00)"

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",  # UBSan
    "WARNING: ThreadSanitizer",
)


def require_binary():
    if not os.path.exists(BIN):
        pytest.fail("sockjoin binary not found at %s (build it, or set SOCKJOIN_BIN)" % BIN)


# --------------------------------------------------------------------------
# Generic waiting
# --------------------------------------------------------------------------

def wait_for(predicate, timeout=DEADLINE, interval=0.02, what="condition"):
    """Poll predicate() until it returns a truthy value; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --------------------------------------------------------------------------
# Sockets
# --------------------------------------------------------------------------

def parse_hostport(text):
    """'127.0.0.1:9000' -> ('127.0.0.1', 9000); '[::1]:9000' -> ('::1', 9000)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text)
    if m:
        return m.group(1), int(m.group(2))
    m = re.fullmatch(r"([^:\[\]]+):(\d+)", text)
    if m:
        return m.group(1), int(m.group(2))
    raise AssertionError("not a HOST:PORT address: %r" % text)


def fmt_hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def connect_tcp(addr, timeout=DEADLINE, rcvbuf=None, sndbuf=None):
    """Connect to (host, port) or 'host:port'; the socket gets a timeout."""
    if isinstance(addr, str):
        addr = parse_hostport(addr)
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def connect_unix(path, timeout=DEADLINE):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def free_port(host="127.0.0.1"):
    """A port nobody listens on: bind an ephemeral port, then close it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def recv_exact(sock, n, timeout=DEADLINE):
    """Read exactly n bytes; fail on EOF or at the deadline."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out: got %d of %d bytes: %r" % (len(buf), n, bytes(buf[:200])))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes: %r" % (len(buf), n, bytes(buf[:200])))
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock, timeout=DEADLINE, limit=1 << 30):
    """Read until EOF; return the bytes. Fails at the deadline."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for EOF after %d bytes: %r" % (len(buf), bytes(buf[:200])))
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(buf)
        buf += chunk
        assert len(buf) <= limit, "more data than expected"


def expect_closed(sock, timeout=DEADLINE):
    """Wait until the peer closes: EOF or a reset. Returns 'eof' or 'reset'.
    Any data read before that is returned as well: (kind, data)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("socket not closed by peer within %.1fs (read %r)" % (timeout, bytes(data[:200])))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return "reset", bytes(data)
        if not chunk:
            return "eof", bytes(data)
        data += chunk


def assert_no_data(sock, wait=1.0):
    """Assert that nothing arrives on sock within `wait` seconds (socket stays
    open and silent). This is a bounded negative check, not a sleep."""
    r, _, _ = select.select([sock], [], [], wait)
    if r:
        sock.settimeout(0.5)
        try:
            data = sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, socket.timeout) as e:
            raise AssertionError("socket unexpectedly became readable: %r" % e)
        raise AssertionError("unexpected data/EOF on socket: %r" % data[:200])


def rst_close(sock):
    """Close with SO_LINGER 0 so the peer gets a RST."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Worker(threading.Thread):
    """A daemon thread whose exception (or result) is re-raised on join."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in join_result
            self.error = e

    def join_result(self, timeout=DEADLINE):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("worker %s did not finish within %.1fs" % (self.fn.__name__, timeout))
        if self.error is not None:
            raise self.error
        return self.result


def send_all_then_shutdown(sock, data, chunk=1 << 16):
    view = memoryview(data)
    for off in range(0, len(view), chunk):
        sock.sendall(view[off:off + chunk])
    sock.shutdown(socket.SHUT_WR)
    return len(data)


def transfer(x, y, data, eof=False, timeout=DEADLINE):
    """Send data on x (in a thread, so big payloads cannot deadlock) and
    check y receives exactly it; with eof=True x then shuts down its write
    half and y must read EOF right after the data."""
    if eof:
        w = Worker(send_all_then_shutdown, x, data)
    else:
        w = Worker(x.sendall, data)
    w.start()
    if eof:
        got = recv_until_eof(y, timeout)
        assert len(got) == len(data), "received %d of %d bytes" % (len(got), len(data))
        assert got == data, "data corrupted"
    else:
        assert recv_exact(y, len(data), timeout) == data
    w.join_result(timeout)


def recv_hash_until_eof(sock, timeout=DEADLINE * 2):
    """Read until EOF; return (byte count, sha256 hexdigest)."""
    deadline = time.monotonic() + timeout
    h = hashlib.sha256()
    n = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for EOF after %d bytes" % n)
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            return n, h.hexdigest()
        n += len(chunk)
        h.update(chunk)


def read_pipe_exact(f, n, timeout=DEADLINE):
    """Read exactly n bytes from a pipe (file object) with a deadline."""
    deadline = time.monotonic() + timeout
    fd = f.fileno()
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("pipe: %d of %d bytes within %.1fs: %r" % (len(buf), n, timeout, bytes(buf[:200])))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise AssertionError("pipe EOF after %d of %d bytes: %r" % (len(buf), n, bytes(buf[:200])))
        buf += chunk
    return bytes(buf)


def read_pipe_until_eof(f, timeout=DEADLINE):
    """Read a pipe (file object) until EOF with a deadline."""
    deadline = time.monotonic() + timeout
    fd = f.fileno()
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("pipe not closed within %.1fs (read %r)" % (timeout, bytes(buf[:200])))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(buf)
        buf += chunk


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Python peers that sockjoin connects to
# --------------------------------------------------------------------------

def echo_until_eof(conn):
    """Sends back what arrives until EOF (or an error); returns then."""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass


def echo_handler(conn, index):
    """A Server handler that echoes until EOF, half-closes, then closes."""
    echo_until_eof(conn)
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()


def recv_jittery_hash(sock, seed, timeout, sizes=(1, 100, 4096, 65536, 262144), stall=0.02):
    """Reads to EOF in random sizes, stalling for up to 10 ms now and then
    (with probability stall per read), so that a relay's destination keeps
    filling and draining. Returns (byte count, sha256 hexdigest)."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    n = 0
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "reader timed out after %d bytes" % n
        if not select.select([sock], [], [], left)[0]:
            continue
        data = sock.recv(rng.choice(sizes))
        if not data:
            return n, h.hexdigest()
        h.update(data)
        n += len(data)
        if rng.random() < stall:
            time.sleep(rng.random() * 0.01)  # pacing, not synchronisation


class Server:
    """A TCP (or Unix) server in a background thread.

    handler(conn, index) runs in its own thread for each accepted connection
    (index counts from 1). Without a handler, accepted sockets are queued and
    can be taken with accept_next(). Counts accepts in .accepts.
    """

    def __init__(self, host="127.0.0.1", handler=None, unix_path=None, backlog=64):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.addr = unix_path
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.bind((host, 0))
            self.host, self.port = host, self.sock.getsockname()[1]
            self.addr = fmt_hostport(host, self.port)
        self.sock.listen(backlog)
        self.handler = handler
        self.accepts = 0
        self.conns = []
        self.errors = []
        self._cond = threading.Condition()
        self._queue = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
            except (OSError, ValueError):
                return
            if self._closed:
                return
            if not r:
                continue
            try:
                conn, peer = self.sock.accept()
            except OSError:
                if self._closed:
                    return
                continue
            conn.settimeout(DEADLINE)
            with self._cond:
                self.accepts += 1
                index = self.accepts
                self.conns.append(conn)
                if self.handler is None:
                    self._queue.append((conn, peer))
                self._cond.notify_all()
            if self.handler is not None:
                threading.Thread(target=self._run_handler, args=(conn, index), daemon=True).start()

    def _run_handler(self, conn, index):
        try:
            self.handler(conn, index)
        except Exception as e:  # noqa: BLE001 - reported via .errors
            self.errors.append(e)

    def accept_next(self, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("server at %s: no connection within %.1fs" % (self.addr, timeout))
                self._cond.wait(left)
            return self._queue.pop(0)[0]

    def wait_accepts(self, n, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.accepts < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("server: %d accepts, expected %d" % (self.accepts, n))
                self._cond.wait(left)

    def close(self):
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self._thread.join(2)


# --------------------------------------------------------------------------
# The sockjoin process
# --------------------------------------------------------------------------

class Sockjoin:
    """A running sockjoin process.

    stdout is read by a background thread into a byte buffer (so the
    `listening` lines can be parsed and, in stdio mode, the relayed data
    read); stderr is read by another thread into a list of lines that can be
    searched and waited on. Neither pipe can fill up.
    """

    def __init__(self, args, stdin=subprocess.DEVNULL, env=None, stdout=subprocess.PIPE, prefix=()):
        require_binary()
        self.args = [str(a) for a in args]
        self.started = time.monotonic()
        # prefix: a command that execs sockjoin in its place, such as
        # ["ip", "netns", "exec", NS] (the pid stays sockjoin's).
        self.proc = subprocess.Popen(
            list(prefix) + [BIN] + self.args,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.pid = self.proc.pid
        self._cond = threading.Condition()
        self._out = bytearray()
        self._out_eof = False
        self._err_lines = []
        self._err_eof = False
        self.listening = {}  # 'A'/'B' -> address text as printed
        self._t_out = threading.Thread(target=self._read_stdout, daemon=True)
        self._t_err = threading.Thread(target=self._read_stderr, daemon=True)
        self._t_out.start()
        self._t_err.start()

    # -- reader threads --------------------------------------------------
    def _read_stdout(self):
        if self.proc.stdout is None:  # stdout redirected by the caller
            with self._cond:
                self._out_eof = True
                self._cond.notify_all()
            return
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._out_eof = True
                    self._cond.notify_all()
                    return
                self._out += chunk
                self._cond.notify_all()

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self._err_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._err_eof = True
            self._cond.notify_all()

    # -- stdout ----------------------------------------------------------
    def read_stdout_line(self, timeout=DEADLINE):
        """Pop one line (without newline) from the front of stdout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while b"\n" not in self._out:
                if self._out_eof:
                    raise AssertionError("stdout closed before a full line (have %r); stderr:\n%s"
                                         % (bytes(self._out), self.stderr_text()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no stdout line within %.1fs (have %r); stderr:\n%s"
                                         % (timeout, bytes(self._out), self.stderr_text()))
                self._cond.wait(left)
            i = self._out.index(b"\n")
            line = bytes(self._out[:i]).decode("utf-8", "replace")
            del self._out[:i + 1]
            return line

    def wait_listening(self, count, timeout=DEADLINE):
        """Read `count` lines 'listening A|B ADDR' from stdout."""
        for _ in range(count):
            line = self.read_stdout_line(timeout)
            m = re.fullmatch(r"listening ([AB]) (\S+)", line)
            assert m, "unexpected stdout line %r (expected 'listening A|B ADDR')" % line
            assert m.group(1) not in self.listening, "side %s announced twice" % m.group(1)
            self.listening[m.group(1)] = m.group(2)
        return self.listening

    def addr(self, side):
        """(host, port) of a listening TCP side."""
        return parse_hostport(self.listening[side])

    def stdout_take(self, n, timeout=DEADLINE):
        """Wait for and remove n bytes from the stdout buffer."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._out) < n:
                if self._out_eof:
                    raise AssertionError("stdout EOF with %d of %d bytes: %r" % (len(self._out), n, bytes(self._out[:200])))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("stdout: %d of %d bytes within %.1fs" % (len(self._out), n, timeout))
                self._cond.wait(left)
            data = bytes(self._out[:n])
            del self._out[:n]
            return data

    def stdout_until_eof(self, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._out_eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("stdout not closed within %.1fs" % timeout)
                self._cond.wait(left)
            data = bytes(self._out)
            self._out.clear()
            return data

    def stdout_pending(self):
        with self._cond:
            return bytes(self._out)

    # -- stderr ----------------------------------------------------------
    def stderr_lines(self):
        with self._cond:
            return list(self._err_lines)

    def stderr_text(self):
        return "\n".join(self.stderr_lines())

    def wait_stderr(self, pattern, timeout=DEADLINE, count=1):
        """Wait until `count` stderr lines match regex `pattern` (re.search).
        Returns the list of match objects."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for m in (rx.search(l) for l in self._err_lines) if m]
                if len(matches) >= count:
                    return matches
                if self._err_eof:
                    raise AssertionError("stderr closed; %d/%d lines match %r; stderr:\n%s"
                                         % (len(matches), count, pattern, "\n".join(self._err_lines)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out (%.1fs): %d/%d stderr lines match %r; stderr:\n%s"
                                         % (timeout, len(matches), count, pattern, "\n".join(self._err_lines)))
                self._cond.wait(left)

    def stderr_matches(self, pattern):
        rx = re.compile(pattern)
        return [m for m in (rx.search(l) for l in self.stderr_lines()) if m]

    def wait_stderr_eof(self, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._err_eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("stderr not closed within %.1fs" % timeout)
                self._cond.wait(left)

    # -- process ---------------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=DEADLINE):
        """Wait for the process to exit; return its status. Also waits for
        the reader threads so stdout/stderr are complete."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("sockjoin did not exit within %.1fs; stderr:\n%s"
                                 % (timeout, self.stderr_text()))
        self._t_out.join(5)
        self._t_err.join(5)
        return rc

    def assert_running_for(self, seconds):
        """Assert the process does not exit within `seconds` (bounded wait)."""
        try:
            rc = self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return
        raise AssertionError("sockjoin exited early with status %s; stderr:\n%s" % (rc, self.stderr_text()))

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.pid)

    def stop(self):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit status.
        Sets .stop_how: 'exited' (already gone), 'sigterm' or 'sigkill'."""
        self.stop_how = "exited"
        if self.proc.poll() is None:
            self.stop_how = "sigterm"
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.stop_how = "sigkill"
                self.proc.kill()
                self.proc.wait(10)
        self._t_out.join(5)
        self._t_err.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
        return self.proc.returncode

    def sanitizer_report(self):
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        return None


def count_listen_sides(args):
    n = 0
    for a in args:
        a = str(a)
        if a.startswith("listen:") or a.startswith("unix-listen:"):
            n += 1
    return n


@pytest.fixture
def sockjoin(request):
    """Factory: sockjoin(*args, wait=True, stdin=DEVNULL, prefix=()) -> Sockjoin.

    With wait=True (default) it reads one `listening` line per listening
    side given in args before returning. Every process is stopped at
    teardown (SIGTERM, then SIGKILL), its stderr is printed (shown by pytest
    for failing tests) and a sanitizer report in stderr fails the test.
    """
    procs = []

    def start(*args, wait=True, stdin=subprocess.DEVNULL, env=None, stdout=subprocess.PIPE, prefix=()):
        sj = Sockjoin(args, stdin=stdin, env=env, stdout=stdout, prefix=prefix)
        procs.append(sj)
        if wait:
            sj.wait_listening(count_listen_sides(args))
        return sj

    yield start

    problems = []
    for sj in procs:
        rc = sj.stop()
        name = "sockjoin " + " ".join(sj.args)
        print("---- %s (status %s, %s) stderr ----" % (name, rc, sj.stop_how))
        print(sj.stderr_text())
        rep = sj.sanitizer_report()
        if rep:
            problems.append("sanitizer report from %s:\n%s" % (name, rep))
        if sj.stop_how == "sigkill":
            problems.append("%s did not exit within %.0fs of SIGTERM" % (name, DEADLINE))
        elif sj.stop_how == "sigterm" and rc != 0:
            problems.append("%s exited with status %s on SIGTERM (expected 0)" % (name, rc))
        elif sj.stop_how == "exited" and rc < 0:
            problems.append("%s was killed by signal %d" % (name, -rc))
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture
def servers():
    """Factory for Server objects, all closed at teardown."""
    made = []

    def make(**kwargs):
        s = Server(**kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def sockets():
    """Track client sockets so they are closed at teardown: sockets(s) -> s."""
    made = []

    def track(s):
        made.append(s)
        return s

    yield track
    for s in made:
        with contextlib.suppress(OSError):
            s.close()


@pytest.fixture
def short_tmp():
    """A short temporary directory (Unix socket paths must stay < 108 bytes)."""
    d = tempfile.mkdtemp(prefix="sj-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_sockjoin(args, timeout=DEADLINE, stdin=subprocess.DEVNULL):
    """Run sockjoin to completion (for usage errors etc.)."""
    require_binary()
    try:
        return subprocess.run([BIN] + [str(a) for a in args], stdin=stdin,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("sockjoin %s did not exit within %.1fs (stdout %r, stderr %r)"
                             % (" ".join(map(str, args)), timeout, e.stdout, e.stderr))


# --------------------------------------------------------------------------
# ss
# --------------------------------------------------------------------------

def ss_established(pid=None):
    """Established TCP sockets as dicts {local, peer, line}; only those of
    `pid` when given. Uses `ss -tnoepH state established`."""
    out = subprocess.run(["ss", "-tnoepH", "state", "established"], capture_output=True,
                         text=True, timeout=10).stdout
    result = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        if pid is not None and ("pid=%d," % pid) not in line:
            continue
        result.append({"local": parts[2], "peer": parts[3], "line": line})
    return result


def parse_ss_time(text):
    """Seconds from ss's timer text: '1min', '59sec', '4.988ms' (that is
    4.988 s: ss prints seconds, '.', milliseconds, 'ms'), '250ms', '1min30sec'."""
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(sec|\.))?(?:(\d+)ms)?", text)
    if not m or not text:
        raise AssertionError("unexpected ss timer text %r" % text)
    minutes, secs, sep, ms = m.groups()
    total = int(minutes or 0) * 60 + int(secs or 0)
    if ms:
        total += int(ms) / 1000.0
    return float(total)


def keepalive_timer(line):
    """Seconds left on the keepalive timer shown by `ss -o`, or None."""
    m = re.search(r"timer:\(keepalive,([^,]+),", line)
    if not m:
        return None
    return parse_ss_time(m.group(1))


def ipv6_loopback_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False
