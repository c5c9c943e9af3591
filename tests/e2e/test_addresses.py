"""Address families and side kinds: IPv6, host names, Unix sockets, stdio,
and listen failures."""

import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, connect_unix, ipv6_loopback_available, parse_hostport,
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


def test_listen_default_host_is_all_interfaces(sockjoin, sockets):
    sj = sockjoin("listen:0", "listen:127.0.0.1:0")
    host, port = sj.addr("A")
    assert host == "0.0.0.0", sj.listening
    a = sockets(connect_tcp(("127.0.0.1", port)))
    b = sockets(connect_tcp(sj.addr("B")))
    exchange(a, b)


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


def test_unix_connect_missing_path_fails(sockjoin, servers, short_tmp):
    sa = servers()
    missing = os.path.join(short_tmp, "nobody.sock")
    sj = sockjoin("connect:" + sa.addr, "unix:" + missing)
    assert sj.wait_exit() == 1
    assert "connect to %s failed" % missing in sj.stderr_text(), sj.stderr_text()


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
    sj = sockjoin("listen:127.0.0.1:0", "stdio", stdin=subprocess.PIPE)
    assert set(sj.listening) == {"A"}
    a = sockets(connect_tcp(sj.addr("A")))
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
