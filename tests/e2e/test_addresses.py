"""Address families and side kinds: IPv6, host names, Unix sockets, stdio,
and listen failures."""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, expect_closed, connect_unix, ipv6_loopback_available,
                      recv_exact, recv_until_eof, run_sockjoin, transfer)

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 not available")


def exchange(x, y):
    x.sendall(b"there")
    assert recv_exact(y, 5) == b"there"
    y.sendall(b"and back")
    assert recv_exact(x, 8) == b"and back"


def close_both(x, y):
    x.shutdown(socket.SHUT_WR)
    assert recv_until_eof(y) == b""
    y.shutdown(socket.SHUT_WR)
    assert recv_until_eof(x) == b""


# --------------------------------------------------------------------------
# IPv6 and host names
# --------------------------------------------------------------------------

@needs_ipv6
def test_ipv6_listen_listen(sockjoin, sockets):
    sj = sockjoin("listen:[::1]:0", "listen:[::1]:0")
    for side in "AB":
        assert re.fullmatch(r"\[::1\]:[1-9]\d*", sj.listening[side]), sj.listening
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    assert a.family == socket.AF_INET6
    exchange(a, b)
    close_both(a, b)


@needs_ipv6
def test_ipv6_connect_from_ipv4_listen(sockjoin, servers, sockets):
    backend = servers(host="::1")
    assert backend.addr.startswith("[::1]:")
    sj = sockjoin("listen:127.0.0.1:0", "connect:" + backend.addr)
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    exchange(a, b)
    close_both(a, b)


def test_listen_localhost_name(sockjoin, sockets):
    sj = sockjoin("listen:localhost:0", "listen:localhost:0")
    for side in "AB":
        host, port = sj.addr(side)
        assert host in ("127.0.0.1", "::1"), sj.listening
        assert port > 0
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    exchange(a, b)


def test_connect_localhost_name(sockjoin, servers, sockets):
    first = socket.getaddrinfo("localhost", 0, socket.AF_UNSPEC, socket.SOCK_STREAM)[0][4][0]
    backend = servers(host=first)
    sj = sockjoin("listen:127.0.0.1:0", "connect:localhost:%d" % backend.port)
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    exchange(a, b)


DEFAULT_HOST_SCRIPT = r"""
import sys
sys.path.insert(0, %(here)r)
from conftest import Sockjoin, connect_tcp, recv_exact
sj = Sockjoin(["listen:0", "listen:127.0.0.1:0"])
try:
    sj.wait_listening(2)
    host, port = sj.addr("A")
    assert host == "0.0.0.0", sj.listening
    a = connect_tcp(("127.0.0.1", port))
    b = connect_tcp(sj.addr("B"))
    a.sendall(b"default host")
    assert recv_exact(b, 12) == b"default host"
    print("OK", sj.listening["A"])
finally:
    sj.stop()
"""


def unshare_available():
    try:
        r = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_listen_default_host_is_all_interfaces():
    """listen:PORT binds 0.0.0.0. Run in a fresh network namespace that has
    only a loopback interface, so nothing listens on a real interface."""
    if not unshare_available():
        pytest.skip("unshare -n not permitted here")
    here = os.path.dirname(os.path.abspath(__file__))
    script = DEFAULT_HOST_SCRIPT % {"here": here}
    r = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
                        sys.executable if sys.executable else "/usr/bin/python3", script],
                       capture_output=True, timeout=DEADLINE * 2)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (out, err)
    assert re.search(r"^OK 0\.0\.0\.0:[1-9]\d*$", out, re.M), out


@pytest.mark.parametrize("busy_side", ["A", "B"])
def test_port_already_in_use_exits_1(busy_side):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        busy = "listen:127.0.0.1:%d" % port
        args = [busy, "listen:127.0.0.1:0"] if busy_side == "A" else ["listen:127.0.0.1:0", busy]
        r = run_sockjoin(args)
        err = r.stderr.decode()
        assert r.returncode == 1, (r.returncode, err)
        assert "cannot listen on 127.0.0.1:%d" % port in err, err
        assert "address already in use" in err, err
        assert re.search(r"^sockjoin: cannot listen on 127\.0\.0\.1:%d: address already in use$" % port,
                         err, re.M), err
        assert ("listening %s " % busy_side).encode() not in r.stdout
    finally:
        holder.close()


# --------------------------------------------------------------------------
# Unix domain sockets
# --------------------------------------------------------------------------

def test_unix_listen_both_sides(sockjoin, sockets, short_tmp):
    pa = os.path.join(short_tmp, "a.sock")
    pb = os.path.join(short_tmp, "b.sock")
    sj = sockjoin("unix-listen:" + pa, "unix-listen:" + pb)
    assert sj.listening == {"A": pa, "B": pb}
    a = sockets(connect_unix(pa))
    b = sockets(connect_unix(pb))
    exchange(a, b)
    transfer(a, b, os.urandom(1 << 20), eof=True)
    b.sendall(b"tail")
    b.shutdown(socket.SHUT_WR)
    assert recv_until_eof(a) == b"tail"


def test_unix_listen_to_unix_connect(sockjoin, servers, sockets, short_tmp):
    pa = os.path.join(short_tmp, "in.sock")
    backend = servers(unix_path=os.path.join(short_tmp, "srv.sock"))
    sj = sockjoin("unix-listen:" + pa, "unix:" + backend.addr)
    assert sj.listening == {"A": pa}
    a = sockets(connect_unix(pa))
    b = backend.accept_next()
    exchange(a, b)
    close_both(a, b)


def test_tcp_listen_to_unix_connect(sockjoin, servers, sockets, short_tmp):
    backend = servers(unix_path=os.path.join(short_tmp, "srv.sock"))
    sj = sockjoin("listen:127.0.0.1:0", "unix:" + backend.addr)
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    exchange(a, b)
    close_both(a, b)
    # Each accepted TCP connection gets its own Unix connection.
    a2 = sockets(connect_tcp(sj.addr("A")))
    b2 = backend.accept_next()
    exchange(a2, b2)
    assert backend.accepts == 2


@pytest.mark.parametrize("what", ["missing", "stale"])
def test_unix_connect_failure_exits_1_at_once(sockjoin, servers, short_tmp, what):
    """unix:PATH to a path that does not exist (ENOENT) or to a socket file
    nobody listens on (ECONNREFUSED) fails immediately, not after the
    connect timeout."""
    sa = servers()
    path = os.path.join(short_tmp, "nobody.sock")
    stale = None
    if what == "stale":
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)  # bound, never listening
    try:
        sj = sockjoin("connect:" + sa.addr, "unix:" + path)
        assert sj.wait_exit() == 1
        elapsed = time.monotonic() - sj.started
        text = sj.stderr_text()
        assert "B connect to %s failed" % path in text, text
        assert elapsed < 5, "took %.1fs to fail (stderr: %s)" % (elapsed, text)
        assert "timed out" not in text, text
    finally:
        if stale:
            stale.close()


# --------------------------------------------------------------------------
# stdio
# --------------------------------------------------------------------------

def test_stdio_to_connect(sockjoin, servers):
    backend = servers()
    sj = sockjoin("stdio", "connect:" + backend.addr, stdin=subprocess.PIPE)
    b = backend.accept_next()
    sj.proc.stdin.write(b"from stdin\n")
    sj.proc.stdin.flush()
    assert recv_exact(b, 11) == b"from stdin\n"
    b.sendall(b"to stdout\n")
    assert sj.stdout_take(10) == b"to stdout\n"
    # Closing stdin half-closes the connection; the other direction goes on.
    sj.proc.stdin.close()
    assert recv_until_eof(b) == b""
    b.sendall(b"after stdin EOF\n")
    assert sj.stdout_take(16) == b"after stdin EOF\n"
    b.close()
    assert sj.wait_exit() == 0, sj.stderr_text()
    assert sj.stdout_until_eof() == b""


def test_stdio_to_connect_bulk(sockjoin, servers):
    backend = servers()
    sj = sockjoin("stdio", "connect:" + backend.addr, stdin=subprocess.PIPE)
    b = backend.accept_next()
    data = os.urandom(4 << 20)
    w = Worker(lambda: (sj.proc.stdin.write(data), sj.proc.stdin.close()))
    w.start()
    assert recv_until_eof(b, timeout=DEADLINE * 2) == data
    w.join_result()
    reply = os.urandom(2 << 20)
    b.sendall(reply)
    b.close()
    assert sj.wait_exit(DEADLINE * 2) == 0
    assert sj.stdout_until_eof() == reply


def test_listen_to_stdio(sockjoin, sockets):
    # The `listening` line comes first on stdout; relayed data follows it.
    sj = sockjoin("listen:127.0.0.1:0", "stdio", stdin=subprocess.PIPE)
    assert set(sj.listening) == {"A"}
    addr = sj.addr("A")
    assert addr[0] == "127.0.0.1" and addr[1] > 0
    a = sockets(connect_tcp(addr))
    a.sendall(b"net to stdout\n")
    assert sj.stdout_take(14) == b"net to stdout\n"
    sj.proc.stdin.write(b"stdin to net\n")
    sj.proc.stdin.flush()
    assert recv_exact(a, 13) == b"stdin to net\n"
    a.shutdown(socket.SHUT_WR)
    sj.proc.stdin.write(b"still going\n")
    sj.proc.stdin.flush()
    assert recv_exact(a, 12) == b"still going\n"
    sj.proc.stdin.close()
    assert recv_until_eof(a) == b""
    # The one pair has ended: the process exits.
    assert sj.wait_exit() == 0, sj.stderr_text()
    assert sj.stdout_until_eof() == b""


def test_stdio_broken_stdout_does_not_kill(sockjoin, servers):
    """Writing to a stdout pipe whose reader is gone raises SIGPIPE unless it
    is ignored: sockjoin must survive it, end the pair and exit normally."""
    backend = servers()
    r, w = os.pipe()
    try:
        sj = sockjoin("stdio", "connect:" + backend.addr, stdin=subprocess.PIPE, stdout=w)
    finally:
        os.close(w)
    os.close(r)  # nobody will ever read sockjoin's stdout
    b = backend.accept_next()
    try:
        for _ in range(16):
            b.sendall(b"x" * 65536)
    except OSError:
        pass  # sockjoin closed (or reset) the connection: fine
    kind, _ = expect_closed(b)
    with contextlib.suppress(OSError):
        sj.proc.stdin.close()
    rc = sj.wait_exit()
    assert rc >= 0, "sockjoin killed by signal %d" % -rc
    assert rc in (0, 1), rc
