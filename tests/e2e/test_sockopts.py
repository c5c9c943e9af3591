"""Socket options on relayed TCP sockets, observed from outside with ss:
keep-alive defaults, --keepalive and --no-keepalive."""

import shutil

import pytest

from conftest import (connect_tcp, fmt_hostport, keepalive_timer, recv_exact, ss_established,
                      wait_for)

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="ss not installed")


def relay_sockets(sj, backend=None, a=None):
    """sockjoin's established sockets: the one accepted from client `a` and,
    with `backend`, the one it created towards it. Polls ss until they show."""
    wanted = {}
    if a is not None:
        wanted["accepted"] = ("127.0.0.1:%d" % sj.addr("A")[1], "127.0.0.1:%d" % a.getsockname()[1])
    if backend is not None:
        wanted["created"] = (None, fmt_hostport(backend.host, backend.port))

    def find():
        found = {}
        for s in ss_established(sj.pid):
            for name, (local, peer) in wanted.items():
                if s["peer"] == peer and (local is None or s["local"] == local):
                    found[name] = s
        return found if len(found) == len(wanted) else None

    return wait_for(find, timeout=10, what="sockjoin's sockets in ss: %r" % wanted)


def wait_keepalive(sj, backend, a):
    """Poll until both relay sockets show a keepalive timer (a socket with
    unacknowledged data shows the retransmit timer instead)."""
    def ready():
        socks = relay_sockets(sj, backend, a)
        if all(keepalive_timer(s["line"]) is not None for s in socks.values()):
            return socks
        return None
    return wait_for(ready, timeout=10, interval=0.1, what="keepalive timers in ss")


def start_pair(sockjoin, servers, sockets, *opts):
    backend = servers()
    sj = sockjoin(*opts, "listen:127.0.0.1:0", "connect:" + backend.addr)
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    a.sendall(b"k")
    assert recv_exact(b, 1) == b"k"
    b.sendall(b"a")
    assert recv_exact(a, 1) == b"a"
    return sj, backend, a, b


def test_keepalive_on_by_default(sockjoin, servers, sockets):
    sj, backend, a, b = start_pair(sockjoin, servers, sockets)
    socks = wait_keepalive(sj, backend, a)
    for name, s in socks.items():
        left = keepalive_timer(s["line"])
        # Default idle time is 60 s; the test has run only a few seconds.
        assert 35 < left <= 60, "%s socket: %s" % (name, s["line"])


def test_keepalive_custom_idle(sockjoin, servers, sockets):
    sj, backend, a, b = start_pair(sockjoin, servers, sockets, "--keepalive", "30,5,3")
    socks = wait_keepalive(sj, backend, a)
    for name, s in socks.items():
        left = keepalive_timer(s["line"])
        assert 15 < left <= 30, "%s socket: %s" % (name, s["line"])


def test_keepalive_short_idle(sockjoin, servers, sockets):
    sj, backend, a, b = start_pair(sockjoin, servers, sockets, "--keepalive", "7,2,2")
    socks = wait_keepalive(sj, backend, a)
    for name, s in socks.items():
        left = keepalive_timer(s["line"])
        assert 0 < left <= 7, "%s socket: %s" % (name, s["line"])


def test_no_keepalive(sockjoin, servers, sockets):
    sj, backend, a, b = start_pair(sockjoin, servers, sockets, "--no-keepalive")
    # Wait until nothing is in flight (Send-Q 0) so no retransmit timer shows,
    # then check that no keepalive timer is armed.
    def settled():
        socks = relay_sockets(sj, backend, a)
        if all(s["line"].split()[1] == "0" for s in socks.values()):
            return socks
        return None
    socks = wait_for(settled, timeout=10, what="idle relay sockets")
    for name, s in socks.items():
        assert "timer:(keepalive" not in s["line"], "%s socket: %s" % (name, s["line"])


def test_keepalive_listen_listen_both_accepted(sockjoin, sockets):
    sj = sockjoin("--keepalive", "20,5,3", "listen:127.0.0.1:0", "listen:127.0.0.1:0")
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    a.sendall(b"x")
    assert recv_exact(b, 1) == b"x"
    peers = {"127.0.0.1:%d" % a.getsockname()[1], "127.0.0.1:%d" % b.getsockname()[1]}

    def ready():
        socks = [s for s in ss_established(sj.pid) if s["peer"] in peers]
        if len(socks) == 2 and all(keepalive_timer(s["line"]) is not None for s in socks):
            return socks
        return None
    for s in wait_for(ready, timeout=10, interval=0.1, what="keepalive timers"):
        assert 5 < keepalive_timer(s["line"]) <= 20, s["line"]
