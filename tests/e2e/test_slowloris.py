"""Slowloris: thousands of connections that never send, against the auth
deadline of an auth= side and against the relay's registration timeout.
Meanwhile a well-behaved client is served at once; when the deadline has
passed every silent connection has been closed, the process's descriptors
are back to where they were, and it has not spun."""

import os
import re
import resource
import select
import socket
import time

import pytest

from conftest import DEADLINE, connect_tcp, parse_hostport, recv_exact, wait_for

SILENT = 2000


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(autouse=True)
def many_descriptors():
    """Room for the silent connections here and in the process under test
    (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 3 * SILENT + 1000)
    if want < 2 * SILENT + 200:
        pytest.skip("needs %d descriptors, the hard limit is %d" % (2 * SILENT + 200, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def wait_events(socks, mask, timeout):
    """Waits until each socket has shown one of the poll events in mask,
    calling nothing; returns those that have not (poll: there are more
    descriptors than select() can take)."""
    by_fd = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, mask)
    deadline = time.monotonic() + timeout
    while by_fd and time.monotonic() < deadline:
        for fd, _ in poller.poll(500):
            if fd in by_fd:
                poller.unregister(fd)
                yield by_fd.pop(fd)
    return


@pytest.fixture
def silent_sockets():
    """Closed at teardown whatever happens: thousands of descriptors left
    open would break the tests that follow (select() takes only 1024)."""
    made = []
    yield made
    for s in made:
        s.close()


def open_silent(addr, n, made):
    socks = made
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(addr)
        socks.append(s)
    done = set(wait_events(socks, select.POLLOUT, DEADLINE))
    assert len(done) == n, "%d connects did not complete" % (n - len(done))
    return socks


def all_closed_by_peer(socks, timeout):
    """Counts the sockets whose peer did not close them (EOF, or a reset)
    within timeout; a reason line before the close is read and skipped."""
    deadline = time.monotonic() + timeout
    left = list(socks)
    while left and time.monotonic() < deadline:
        ended = []
        for s in wait_events(left, select.POLLIN | select.POLLHUP, deadline - time.monotonic()):
            try:
                while s.recv(65536):
                    pass
                ended.append(s)
            except BlockingIOError:
                pass  # a reason line came; the close follows
            except OSError:
                ended.append(s)
        left = [s for s in left if s not in ended]
    return len(left)


def test_silent_peers_against_the_auth_deadline(sockjoin, servers, tmp_path, silent_sockets):
    token = tmp_path / "token"
    token.write_text("letmein\n")
    def echo_once(conn, index):
        conn.sendall(conn.recv(100))
        conn.close()

    echo_backend = servers(handler=echo_once)
    sj = sockjoin("-v", "--auth-timeout", "5", "listen:127.0.0.1:0,auth=token:%s" % token,
                  "connect:" + echo_backend.addr)
    addr = sj.addr("A")

    def served():
        good = connect_tcp(addr)
        good.sendall(b"letmein\nping")
        assert recv_exact(good, 4) == b"ping"
        good.close()

    served()  # first, so that what is made once (the splice pipe) is in the baseline
    sj.wait_stderr(r"pair 1 closed")
    fds_before = fd_count(sj.pid)
    cpu_before = cpu_seconds(sj.pid)
    silent = open_silent(addr, SILENT, silent_sockets)
    served()  # while the silent ones wait
    # Every silent peer is refused once the deadline passes.
    assert all_closed_by_peer(silent, DEADLINE) == 0
    sj.wait_stderr(r"refused: auth timed out", count=SILENT)
    for s in silent:
        s.close()
    silent.clear()
    wait_for(lambda: fd_count(sj.pid) == fds_before,
             what="descriptors back to baseline (%d)" % fds_before)
    # 2000 accepts, 2000 refusals: well under a second of CPU, where a busy
    # loop would burn every second the test took.
    assert cpu_seconds(sj.pid) - cpu_before < 2.0


def test_silent_clients_against_the_relay_registration(sockjoin, silent_sockets):
    sj = sockjoin("relay", "--listen", "127.0.0.1:0", "--register-timeout", "5", wait=False)
    m = re.fullmatch(r"listening relay (\S+)", sj.read_stdout_line())
    addr = parse_hostport(m.group(1))
    fds_before = fd_count(sj.pid)
    cpu_before = cpu_seconds(sj.pid)
    silent = open_silent(addr, SILENT, silent_sockets)
    # Two real clients register and talk while the silent ones wait.
    a, b = connect_tcp(addr), connect_tcp(addr)
    a.sendall(b"alice|")
    # A message to itself coming back proves bob is registered.
    b.sendall(b"bob|bob|2|me")
    assert recv_exact(b, len(b"bob|2|me")) == b"bob|2|me"
    a.sendall(b"bob|5|hello")
    assert recv_exact(b, len(b"alice|5|hello")) == b"alice|5|hello"
    assert all_closed_by_peer(silent, DEADLINE) == 0
    for s in silent:
        s.close()
    silent.clear()
    a.close()
    b.close()
    wait_for(lambda: fd_count(sj.pid) == fds_before, what="descriptors back to baseline")
    assert cpu_seconds(sj.pid) - cpu_before < 2.0
