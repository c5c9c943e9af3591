"""Faults: running out of descriptors, resets against a full peer, dials that
fail after the grace period, a one-pair run losing an end, and --max-pairs
holding back outbound connections."""

import os
import resource
import select
import socket
import threading
import time

import pytest

from conftest import (DEADLINE, Worker, assert_no_data, connect_tcp, echo_handler, echo_until_eof, expect_closed,
                      recv_exact, rst_close, wait_for)

LL = ("listen:127.0.0.1:0", "listen:127.0.0.1:0")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_fd_limit(pid, n):
    """Sets the soft limit only: raising it back needs no privilege."""
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (n, hard))


# valgrind keeps descriptors of its own in the process and clamps its
# limits, so the descriptor-limit tests do not apply under it.
needs_own_fd_table = pytest.mark.skipif(os.environ.get("SOCKJOIN_VALGRIND") == "1",
                                        reason="valgrind manages the descriptor table")


@needs_own_fd_table
def test_dial_out_of_descriptors_fails_that_connection_only(sockjoin, servers, sockets):
    """The accepted socket takes the last descriptor, so the outbound socket
    cannot be made: that connection is closed and logged, nothing else is
    disturbed, and connections work again once descriptors are back."""
    backend = servers(handler=echo_handler)
    sj = sockjoin("listen:127.0.0.1:0", "connect:" + backend.addr)
    set_fd_limit(sj.pid, open_fds(sj.pid) + 1)
    victim = sockets(connect_tcp(sj.addr("A")))
    expect_closed(victim)
    sj.wait_stderr(r"B connect to %s failed: too many open files" % backend.addr)
    assert sj.alive()
    set_fd_limit(sj.pid, 1024)
    ok = sockets(connect_tcp(sj.addr("A")))
    ok.sendall(b"still serving\n")
    assert recv_exact(ok, 14) == b"still serving\n"


@needs_own_fd_table
def test_accept_out_of_descriptors_waits_logs_once_and_recovers(sockjoin, servers, sockets):
    """With no descriptor left for accept, a flood of connections waits in
    the kernel's backlog: the pair already open keeps working, the failure
    is logged once, the process does not spin (accepting pauses and
    retries), and once descriptors free up every waiting connection is
    served."""
    backend = servers(handler=echo_handler)
    sj = sockjoin("listen:127.0.0.1:0", "connect:" + backend.addr)
    kept = sockets(connect_tcp(sj.addr("A")))
    kept.sendall(b"ping\n")
    assert recv_exact(kept, 5) == b"ping\n"
    set_fd_limit(sj.pid, open_fds(sj.pid))
    cpu_before = cpu_seconds(sj.pid)
    flood = [sockets(connect_tcp(sj.addr("A"))) for _ in range(50)]
    sj.wait_stderr(r"A accept failed: too many open files")
    for s in flood[:5]:
        assert_no_data(s, wait=0.3)  # waiting, not closed
    kept.sendall(b"pong\n")
    assert recv_exact(kept, 5) == b"pong\n"
    # Retrying every quarter second costs next to nothing; a busy loop
    # would burn the whole time spent here.
    assert cpu_seconds(sj.pid) - cpu_before < 1.0
    assert len(sj.stderr_matches(r"accept failed")) == 1
    set_fd_limit(sj.pid, 1024)
    for i, s in enumerate(flood):
        s.sendall(b"back %02d\n" % i)
    for i, s in enumerate(flood):
        assert recv_exact(s, 8) == b"back %02d\n" % i


@pytest.mark.parametrize("path", [(), ("--no-splice",)], ids=["splice", "copy"])
def test_reset_while_far_side_is_full(sockjoin, sockets, path):
    """B resets while the relay still has bytes on their way to A, whose
    window is full: the pair is torn down (A is reset too), with no crash
    and no use of freed memory (the sanitizer build checks that)."""
    sj = sockjoin(*path, "--buffer", "65536", *LL)
    a = sockets(connect_tcp(sj.addr("A"), rcvbuf=4096))
    b = sockets(connect_tcp(sj.addr("B"), sndbuf=65536))
    b.setblocking(False)
    sent = 0
    deadline = time.monotonic() + DEADLINE
    # Fill until B's socket stays full: the relay has stopped reading it.
    while time.monotonic() < deadline:
        try:
            sent += b.send(b"x" * 65536)
        except BlockingIOError:
            if sent > (1 << 20) and not select.select([], [b], [], 0.5)[1]:
                break
    assert sent > (1 << 20)
    rst_close(b)
    expect_closed(a)
    assert sj.alive()


def never_answering_listener():
    """A listener whose accept queue is full, so connects to it hang."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(8):
        probe = socket.socket()
        probe.settimeout(1.0)
        try:
            probe.connect(full.getsockname())
        except socket.timeout:
            probe.close()
            return full, fillers
        fillers.append(probe)
    pytest.skip("could not fill the accept queue of a listener")


def test_grace_period_ends_after_a_late_dial_failure(sockjoin, sockets):
    """The grace period passes while an outbound connect is pending; when
    that connect fails, nothing is left and the connector ends."""
    full, fillers = never_answering_listener()
    try:
        port = full.getsockname()[1]
        sj = sockjoin("--timeout", "0.3", "--connect-timeout", "1.5",
                      "listen:127.0.0.1:0", "connect:127.0.0.1:%d" % port)
        client = sockets(connect_tcp(sj.addr("A")))
        assert sj.wait_exit() == 0
        assert "connect to 127.0.0.1:%d failed: connection timed out" % port in sj.stderr_text()
        expect_closed(client)
    finally:
        for f in fillers:
            f.close()
        full.close()


def test_one_pair_run_fails_when_an_end_resets_before_pairing(sockjoin, servers):
    """connect/connect: A's server resets at once; the run cannot form its
    pair and must end with status 1 rather than wait for ever."""
    def reset_at_once(conn, index):
        rst_close(conn)

    a = servers(handler=reset_at_once)
    b = servers(handler=echo_handler)
    sj = sockjoin("connect:" + a.addr, "connect:" + b.addr)
    assert sj.wait_exit() == 1
    # The reset lands before the connect completes, before B arrives, or
    # after pairing: each way the run fails and says why.
    assert sj.stderr_matches(
        r"(A connect to .* failed|closed before pairing|pair 1 closed).*connection reset by peer")


def test_max_pairs_limits_outbound_connections(sockjoin, servers):
    """listen/connect with --max-pairs 2: ten clients at once are served,
    but the backend never sees more than two connections at a time."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def counting_echo(conn, index):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        echo_until_eof(conn)
        # Counted out before the close that lets the relay dial the next one.
        with lock:
            state["now"] -= 1
        conn.close()

    backend = servers(handler=counting_echo)
    sj = sockjoin("--max-pairs", "2", "listen:127.0.0.1:0", "connect:" + backend.addr)
    clients = [connect_tcp(sj.addr("A")) for _ in range(10)]

    def talk(s, i):
        msg = b"client %d\n" % i
        s.sendall(msg)
        assert recv_exact(s, len(msg), timeout=DEADLINE * 2) == msg
        s.close()

    workers = [Worker(talk, s, i) for i, s in enumerate(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join_result(DEADLINE * 3)
    wait_for(lambda: backend.accepts == 10, what="all ten clients served")
    assert state["most"] <= 2, state
