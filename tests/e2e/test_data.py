"""Data integrity: bulk transfer, early data, half-close, resets and
backpressure, each through both relay configurations: the default, which
splices (zero-copy) once a direction carries bulk data (a read has filled a
whole buffer) and copies small exchanges, and --no-splice, which always
copies. The bulk and backpressure tests are the ones that splice."""

import os
import select
import socket
import time

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, expect_closed, recv_exact,
                      recv_hash_until_eof, recv_jittery_hash, recv_until_eof, rst_close,
                      send_all_then_shutdown, sha256, transfer)

LL = ("listen:127.0.0.1:0", "listen:127.0.0.1:0")
MIB = 1024 * 1024
BULK = 16 * MIB


@pytest.fixture(params=["splice", "copy"])
def path(request):
    """Options selecting the relay path under test."""
    return () if request.param == "splice" else ("--no-splice",)


def bulk_both_ways(a, b):
    """16 MiB each way at the same time; both ends half-close when done and
    must read exactly the other's bytes followed by EOF."""
    data_a = os.urandom(BULK)
    data_b = os.urandom(BULK)
    workers = [
        Worker(send_all_then_shutdown, a, data_a),
        Worker(send_all_then_shutdown, b, data_b),
        Worker(recv_hash_until_eof, b, DEADLINE * 3),
        Worker(recv_hash_until_eof, a, DEADLINE * 3),
    ]
    for w in workers:
        w.start()
    for w in workers[:2]:
        w.join_result(DEADLINE * 3)
    n_b, h_b = workers[2].join_result(DEADLINE * 3)
    n_a, h_a = workers[3].join_result(DEADLINE * 3)
    assert n_b == BULK, "B received %d of %d bytes" % (n_b, BULK)
    assert h_b == sha256(data_a), "A->B data corrupted"
    assert n_a == BULK, "A received %d of %d bytes" % (n_a, BULK)
    assert h_a == sha256(data_b), "B->A data corrupted"


def test_bulk_16mib_both_ways_listen_listen(sockjoin, path, sockets):
    sj = sockjoin(*path, *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    bulk_both_ways(a, b)
    assert sj.alive()


def test_bulk_16mib_both_ways_listen_connect(sockjoin, path, servers, sockets):
    backend = servers()
    sj = sockjoin(*path, "listen:127.0.0.1:0", "connect:" + backend.addr)
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    bulk_both_ways(a, b)
    assert sj.alive()


def test_data_sent_before_partner_arrives_is_delivered(sockjoin, path, sockets):
    sj = sockjoin(*path, "-v", *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    early = b"early bird " * 1000
    a.sendall(early)
    sj.wait_stderr(r"\bA accepted 127\.0\.0\.1:%d\b" % a.getsockname()[1])
    b = sockets(connect_tcp(sj.addr("B")))
    assert recv_exact(b, len(early)) == early
    # The pair works normally afterwards.
    b.sendall(b"late reply")
    assert recv_exact(a, 10) == b"late reply"
    a.sendall(b"more")
    assert recv_exact(b, 4) == b"more"


def test_data_and_eof_sent_before_partner_arrives_are_delivered(sockjoin, path, sockets):
    """A waiting side that sent data and then half-closed (like `printf x | nc`)
    is still paired: the data and then EOF reach B, and B can answer."""
    sj = sockjoin(*path, "-v", *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    early = b"request and EOF"
    a.sendall(early)
    a.shutdown(socket.SHUT_WR)
    sj.wait_stderr(r"\bA accepted 127\.0\.0\.1:%d\b" % a.getsockname()[1])
    b = sockets(connect_tcp(sj.addr("B")))
    assert recv_until_eof(b) == early
    b.sendall(b"answer")
    b.shutdown(socket.SHUT_WR)
    assert recv_until_eof(a) == b"answer"


def test_early_data_from_b_side_too(sockjoin, path, sockets):
    sj = sockjoin(*path, "-v", *LL)
    b = sockets(connect_tcp(sj.addr("B")))
    b.sendall(b"B was first")
    sj.wait_stderr(r"\bB accepted 127\.0\.0\.1:%d\b" % b.getsockname()[1])
    a = sockets(connect_tcp(sj.addr("A")))
    assert recv_exact(a, 11) == b"B was first"


@pytest.mark.parametrize("first", ["A", "B"])
def test_half_close(sockjoin, path, sockets, first):
    sj = sockjoin(*path, *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    x, y = (a, b) if first == "A" else (b, a)
    # x sends, then shuts down its write half.
    # y gets all of it, then EOF.
    transfer(x, y, os.urandom(300 * 1024), eof=True)
    # The other direction keeps flowing, several times.
    for i in range(3):
        msg = b"still talking %d\n" % i
        y.sendall(msg)
        assert recv_exact(x, len(msg)) == msg
    transfer(y, x, os.urandom(200 * 1024))
    # Then y ends too: x reads EOF.
    y.shutdown(socket.SHUT_WR)
    assert recv_until_eof(x) == b""
    assert sj.alive()


@pytest.mark.parametrize("who", ["A", "B"])
def test_reset_propagates(sockjoin, path, sockets, who):
    sj = sockjoin(*path, *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    a.sendall(b"x")
    assert recv_exact(b, 1) == b"x"
    x, y = (a, b) if who == "A" else (b, a)
    rst_close(x)
    kind, data = expect_closed(y)
    assert data == b""
    assert kind in ("reset", "eof")
    assert sj.alive()
    # The relay still works for a new pair.
    a2 = sockets(connect_tcp(sj.addr("A")))
    b2 = sockets(connect_tcp(sj.addr("B")))
    a2.sendall(b"new pair")
    assert recv_exact(b2, 8) == b"new pair"


def test_reset_while_writing_does_not_kill_relay(sockjoin, path, sockets):
    """B resets while A is pushing data: sockjoin's writes to B fail with
    EPIPE/ECONNRESET; SIGPIPE must not kill it."""
    sj = sockjoin(*path, *LL)
    for _ in range(3):
        a = sockets(connect_tcp(sj.addr("A")))
        b = sockets(connect_tcp(sj.addr("B")))
        a.sendall(b"go")
        assert recv_exact(b, 2) == b"go"
        blob = os.urandom(4 * MIB)
        w = Worker(_send_ignoring_errors, a, blob)
        w.start()
        rst_close(b)
        expect_closed(a)
        w.join_result()
        assert sj.alive(), "sockjoin died: status %s" % sj.proc.returncode
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    a.sendall(b"alive")
    assert recv_exact(b, 5) == b"alive"


def _send_ignoring_errors(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_backpressure_bounded_memory(sockjoin, path, sockets):
    total = 64 * MIB + 1 * MIB
    limit_kib = int(os.environ.get("SOCKJOIN_RSS_LIMIT_MIB", "64")) * 1024
    sj = sockjoin(*path, "--buffer", "65536", *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    # A small receive buffer on the paused reader so the stall comes early.
    b = sockets(connect_tcp(sj.addr("B"), rcvbuf=65536))
    a.sendall(b"0")
    assert recv_exact(b, 1) == b"0"
    data = os.urandom(total)
    view = memoryview(data)

    # Push as fast as possible without reading on B, until the writer stalls:
    # non-blocking sends get EAGAIN and the socket does not become writable
    # again within 2 s.
    a.setblocking(False)
    sent = 0
    deadline = time.monotonic() + DEADLINE * 2
    while sent < total:
        assert time.monotonic() < deadline, "writer neither finished nor stalled"
        try:
            sent += a.send(view[sent:sent + 65536])
            continue
        except BlockingIOError:
            pass
        _, w, _ = select.select([], [a], [], 2.0)
        if not w:
            break  # stalled: backpressure reached the writer
    rss = sj.rss_kib()
    assert sent < total, "writer pushed all %d bytes into a reader that never read" % total
    assert rss < limit_kib, "sockjoin RSS %d KiB with %d bytes queued (limit %d KiB)" % (rss, sent, limit_kib)

    # Resume: B reads everything while A sends the rest.
    a.setblocking(True)
    a.settimeout(DEADLINE * 3)
    reader = Worker(recv_hash_until_eof, b, DEADLINE * 4)
    reader.start()
    a.sendall(view[sent:])
    a.shutdown(socket.SHUT_WR)
    n, h = reader.join_result(DEADLINE * 4)
    assert n == total, "B received %d of %d bytes" % (n, total)
    assert h == sha256(data)
    rss_after = sj.rss_kib()
    assert rss_after < limit_kib, "sockjoin RSS %d KiB after the transfer" % rss_after


def test_bulk_with_stalling_readers(sockjoin, path, sockets):
    sj = sockjoin(*path, "--buffer", "131072", *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    data_a, data_b = os.urandom(BULK), os.urandom(BULK)
    workers = [
        Worker(send_all_then_shutdown, a, data_a),
        Worker(send_all_then_shutdown, b, data_b),
        Worker(recv_jittery_hash, b, 1, DEADLINE * 4),
        Worker(recv_jittery_hash, a, 2, DEADLINE * 4),
    ]
    for w in workers:
        w.start()
    for w in workers[:2]:
        w.join_result(DEADLINE * 4)
    assert workers[2].join_result(DEADLINE * 4) == (BULK, sha256(data_a))
    assert workers[3].join_result(DEADLINE * 4) == (BULK, sha256(data_b))
    assert sj.alive()
