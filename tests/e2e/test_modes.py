"""The four modes (listen/listen, listen/connect, connect/listen,
connect/connect), third-party peers (ncat, socat), concurrent pairs and
outbound connect failures."""

import os
import socket
import subprocess
import time

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, expect_closed, free_port, read_pipe_exact,
                      read_pipe_until_eof,
                      recv_exact, recv_until_eof)

LL = ("listen:127.0.0.1:0", "listen:127.0.0.1:0")


def exchange(x, y, tag=b""):
    """Send one message each way between two connected peers and check it."""
    m1 = b"ping from first " + tag + b"\n"
    m2 = b"pong from second " + tag + b"\n"
    x.sendall(m1)
    assert recv_exact(y, len(m1)) == m1
    y.sendall(m2)
    assert recv_exact(x, len(m2)) == m2


def test_listen_listen_echo_both_ways(sockjoin, sockets):
    sj = sockjoin(*LL)
    assert set(sj.listening) == {"A", "B"}
    ha, pa = sj.addr("A")
    hb, pb = sj.addr("B")
    assert ha == hb == "127.0.0.1"
    assert pa != 0 and pb != 0 and pa != pb
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    exchange(a, b)
    exchange(b, a, b"again")
    a.close()
    assert recv_until_eof(b) == b""


def test_listen_connect_echo_both_ways(sockjoin, servers, sockets):
    backend = servers()
    sj = sockjoin("listen:127.0.0.1:0", "connect:" + backend.addr)
    assert set(sj.listening) == {"A"}
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    exchange(a, b)
    exchange(b, a, b"2")
    b.close()
    assert recv_until_eof(a) == b""


def test_connect_listen_echo_both_ways(sockjoin, servers, sockets):
    backend = servers()
    sj = sockjoin("connect:" + backend.addr, "listen:127.0.0.1:0")
    assert set(sj.listening) == {"B"}
    b = sockets(connect_tcp(sj.addr("B")))
    a = backend.accept_next()
    exchange(a, b)
    exchange(b, a, b"2")
    a.close()
    assert recv_until_eof(b) == b""


def test_connect_connect_exits_0_when_pair_ends(sockjoin, servers):
    sa, sb = servers(), servers()
    sj = sockjoin("connect:" + sa.addr, "connect:" + sb.addr)
    assert sj.listening == {}
    a = sa.accept_next()
    b = sb.accept_next()
    exchange(a, b)
    exchange(b, a, b"2")
    a.shutdown(socket.SHUT_WR)
    assert recv_until_eof(b) == b""
    b.shutdown(socket.SHUT_WR)
    assert recv_until_eof(a) == b""
    a.close()
    b.close()
    assert sj.wait_exit() == 0
    assert sj.stdout_until_eof() == b""


def test_connect_connect_exits_1_when_connect_fails(sockjoin, servers):
    sa = servers()
    dead = free_port()
    sj = sockjoin("connect:" + sa.addr, "connect:127.0.0.1:%d" % dead)
    assert sj.wait_exit() == 1
    text = sj.stderr_text()
    assert "connect to 127.0.0.1:%d failed" % dead in text, text
    assert "refused" in text.lower(), text


def test_connect_timeout_fails_hanging_connect(sockjoin, servers):
    """--connect-timeout bounds an outbound connect that never completes:
    the target listener's accept queue is full, so the kernel drops SYNs."""
    sa = servers()
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        # Fill the accept queue until a probe connect no longer completes.
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(1.0)
            try:
                probe.connect(("127.0.0.1", port))
            except socket.timeout:
                probe.close()
                break
            fillers.append(probe)
        else:
            pytest.skip("could not fill the accept queue of a listener")
        t0 = time.monotonic()
        sj = sockjoin("--connect-timeout", "1", "connect:" + sa.addr,
                      "connect:127.0.0.1:%d" % port)
        assert sj.wait_exit() == 1
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.9, elapsed
        assert elapsed < 15, elapsed
        assert "connect to 127.0.0.1:%d failed" % port in sj.stderr_text()
    finally:
        for f in fillers:
            f.close()
        full.close()


def test_ncat_as_peer(sockjoin, sockets):
    sj = sockjoin(*LL)
    host, port = sj.addr("A")
    nc = subprocess.Popen(["ncat", host, str(port)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        b = sockets(connect_tcp(sj.addr("B")))
        msg = b"hello from ncat\n"
        nc.stdin.write(msg)
        nc.stdin.flush()
        assert recv_exact(b, len(msg)) == msg
        reply = b"hello back to ncat\n"
        b.sendall(reply)
        assert read_pipe_exact(nc.stdout, len(reply)) == reply
        nc.stdin.close()  # ncat half-closes on stdin EOF
        assert recv_until_eof(b) == b""
        b.close()
        assert read_pipe_until_eof(nc.stdout) == b""
        assert nc.wait(DEADLINE) == 0, nc.stderr.read()
    finally:
        if nc.poll() is None:
            nc.kill()
            nc.wait(5)


def test_socat_as_peer(sockjoin, servers):
    backend = servers()
    sj = sockjoin("listen:127.0.0.1:0", "connect:" + backend.addr)
    host, port = sj.addr("A")
    data = os.urandom(256 * 1024)
    sc = subprocess.Popen(["socat", "-t", "20", "-", "TCP:%s:%d" % (host, port)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        b = backend.accept_next()
        reply = b"socat got it\n"
        w = Worker(lambda: (sc.stdin.write(data), sc.stdin.close()))
        w.start()
        got = recv_until_eof(b)  # socat shuts down write after stdin EOF
        w.join_result()
        assert got == data
        b.sendall(reply)
        b.close()
        assert read_pipe_until_eof(sc.stdout) == reply
        assert sc.wait(DEADLINE) == 0, sc.stderr.read()
    finally:
        if sc.poll() is None:
            sc.kill()
            sc.wait(5)


def test_ten_concurrent_pairs_fifo(sockjoin, sockets):
    sj = sockjoin(*LL)
    n = 10
    pairs = []
    for i in range(n):
        a = sockets(connect_tcp(sj.addr("A")))
        b = sockets(connect_tcp(sj.addr("B")))
        pairs.append((a, b))
    # Every A_i talks to B_i, both ways, and nothing leaks between pairs.
    for i, (a, b) in enumerate(pairs):
        a.sendall(b"A%02d->B%02d|" % (i, i) * (i + 1))
        b.sendall(b"B%02d->A%02d|" % (i, i) * (i + 1))
    for i, (a, b) in enumerate(pairs):
        want_b = b"A%02d->B%02d|" % (i, i) * (i + 1)
        want_a = b"B%02d->A%02d|" % (i, i) * (i + 1)
        assert recv_exact(b, len(want_b)) == want_b, "pair %d" % i
        assert recv_exact(a, len(want_a)) == want_a, "pair %d" % i
    # Closing one pair leaves the others working.
    a0, b0 = pairs[0]
    a0.close()
    assert recv_until_eof(b0) == b""
    for i, (a, b) in enumerate(pairs[1:], start=1):
        exchange(a, b, b"%d" % i)


def test_listen_connect_one_outbound_per_accept(sockjoin, servers, sockets):
    def handler(conn, index):
        token = recv_exact(conn, 8)
        conn.sendall(token + b":%d\n" % index)
        recv_until_eof(conn)
        conn.close()

    backend = servers(handler=handler)
    sj = sockjoin("listen:127.0.0.1:0", "connect:" + backend.addr)
    clients = []
    for i in range(5):
        c = sockets(connect_tcp(sj.addr("A")))
        clients.append(c)
    backend.wait_accepts(5)
    seen = set()
    for i, c in enumerate(clients):
        token = b"client%02d" % i
        c.sendall(token)
        line = b""
        while not line.endswith(b"\n"):
            line += recv_exact(c, 1)
        got_token, idx = line[:-1].split(b":")
        assert got_token == token
        seen.add(int(idx))
    assert seen == {1, 2, 3, 4, 5}
    for c in clients:
        c.close()
    # No extra outbound connections were made.
    assert backend.accepts == 5
    assert not backend.errors, backend.errors


def test_listen_connect_outbound_failure_closes_accepted(sockjoin, sockets):
    dead = free_port()
    sj = sockjoin("listen:127.0.0.1:0", "connect:127.0.0.1:%d" % dead)
    for _ in range(2):
        a = sockets(connect_tcp(sj.addr("A")))
        kind, data = expect_closed(a)
        assert data == b""
    sj.wait_stderr(r"connect to 127\.0\.0\.1:%d failed" % dead, count=2)
    # The failure is not fatal in listen/connect mode.
    assert sj.alive()


def test_connect_listen_outbound_failure_closes_accepted(sockjoin, sockets):
    dead = free_port()
    sj = sockjoin("connect:127.0.0.1:%d" % dead, "listen:127.0.0.1:0")
    b = sockets(connect_tcp(sj.addr("B")))
    expect_closed(b)
    sj.wait_stderr(r"A connect to 127\.0\.0\.1:%d failed" % dead)
    assert sj.alive()
