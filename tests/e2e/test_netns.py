"""Network faults in a namespace the test makes itself: a peer that vanishes
silently (its link goes down: no FIN, no reset) is found dead by TCP
keep-alive within idle + interval x count, and its pair is closed.

Needs root and `ip netns`; skipped where the sandbox forbids namespaces.
Loss, delay, reordering, duplication and a path that goes dark without a
link down are in test_netimpair.py: this kernel has no `tc netem`, so that
link is made in user space (netimpair.py, two TUN devices and a forwarder)."""

import os
import re
import subprocess
import sys
import time

import pytest

from conftest import DEADLINE, connect_tcp, expect_closed

SERVER = r"""
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen(4)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept()   # hold every connection, never answer
    conns.append(c)
"""


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True, check=check)


@pytest.fixture
def netns():
    """A namespace joined to this one by a veth pair: (namespace, its address)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = "sj%d" % os.getpid()
    ns, host_if, ns_if = tag, tag + "a", tag + "b"
    net = 10 + os.getpid() % 200  # 10.213.NET.0/30, private to this test
    host_ip, ns_ip = "10.213.%d.1" % net, "10.213.%d.2" % net
    r = ip("netns", "add", ns, check=False)
    if r.returncode != 0:
        pytest.skip("cannot make a network namespace here: %s" % r.stderr.strip())
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", host_ip + "/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", ns_ip + "/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, ns_if, ns_ip
    finally:
        ip("link", "del", host_if, check=False)
        ip("netns", "del", ns, check=False)


def test_keepalive_finds_a_silently_vanished_peer(sockjoin, sockets, netns):
    ns, ns_if, ns_ip = netns
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, ns_ip],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        idle, interval, count = 1, 1, 2
        sj = sockjoin("-v", "--keepalive", "%d,%d,%d" % (idle, interval, count),
                      "listen:127.0.0.1:0", "connect:%s:%d" % (ns_ip, port))
        a = sockets(connect_tcp(sj.addr("A")))
        sj.wait_stderr(r"pair 1 formed")
        # The peer's link goes down: what the relay sends now vanishes, and
        # nothing comes back, not even a reset.
        ip("-n", ns, "link", "set", ns_if, "down")
        t0 = time.monotonic()
        sj.wait_stderr(r"pair 1 closed: .*connection timed out", timeout=DEADLINE)
        elapsed = time.monotonic() - t0
        # Keep-alive declares the peer dead after idle + interval x count
        # seconds of silence (plus scheduling slack).
        assert elapsed < idle + interval * count + 5, elapsed
        expect_closed(a)  # and the other end of the pair is closed too
        assert sj.alive()
    finally:
        server.kill()
        server.wait()
