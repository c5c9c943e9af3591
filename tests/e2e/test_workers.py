"""--workers: several threads accept from one listening socket, each pairing
what it accepts with its own outbound connection."""

import json
import os
import signal

from conftest import (DEADLINE, Worker, connect_tcp, echo_handler, recv_exact,
                      recv_hash_until_eof, send_all_then_shutdown, sha256, wait_for)


def listening_inodes(port):
    """Inodes of the IPv4 sockets listening on port (from /proc/net/tcp)."""
    inodes = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.append(fields[9])
    return inodes


def descriptors_of(pid, inode):
    """How many of pid's descriptors are the socket with this inode."""
    target = "socket:[%s]" % inode
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target
        except OSError:
            pass
    return count


def test_workers_share_the_port_and_keep_connections_apart(sockjoin, servers):
    backend = servers(handler=echo_handler)
    sj = sockjoin("-v", "--stats", "--workers", "2", "listen:127.0.0.1:0",
                  "connect:" + backend.addr)
    # One listening socket, held by both workers: whichever is free accepts.
    inodes = listening_inodes(sj.addr("A")[1])
    assert len(inodes) == 1
    assert descriptors_of(sj.pid, inodes[0]) == 2
    clients = [connect_tcp(sj.addr("A")) for _ in range(40)]

    def talk(s, i):
        msg = (b"client %d " % i) * (i + 1)
        s.sendall(msg)
        got = recv_exact(s, len(msg))
        s.close()
        return got == msg

    workers = [Worker(talk, s, i) for i, s in enumerate(clients)]
    for w in workers:
        w.start()
    assert all(w.join_result(DEADLINE * 2) for w in workers)
    wait_for(lambda: len(sj.stderr_matches(r"pair \d+ closed")) == 40, what="40 pairs closed")
    # Which worker takes a connection is up to which is free first (the
    # unit test of the shared listener shows that any of them can); every
    # pair is one worker's.
    formed = sj.stderr_matches(r"^\S+ worker [12]: pair \d+ formed")
    assert len(formed) == 40
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    stats = json.loads([l for l in sj.stderr_lines() if l.strip()][-1])
    assert stats["pairs"] == 40
    sent = sum(len((b"client %d " % i) * (i + 1)) for i in range(40))
    assert stats["bytes_a_to_b"] == sent and stats["bytes_b_to_a"] == sent
    assert sum(len(v) for v in stats["sockets_a"].values()) == 40


def test_workers_bulk_integrity(sockjoin, servers, sockets):
    backend = servers()
    sj = sockjoin("--workers", "2", "listen:127.0.0.1:0", "connect:" + backend.addr)
    a = sockets(connect_tcp(sj.addr("A")))
    b = backend.accept_next()
    data_a, data_b = os.urandom(16 << 20), os.urandom(16 << 20)
    jobs = [Worker(send_all_then_shutdown, a, data_a), Worker(send_all_then_shutdown, b, data_b),
            Worker(recv_hash_until_eof, b), Worker(recv_hash_until_eof, a)]
    for j in jobs:
        j.start()
    assert jobs[2].join_result(DEADLINE * 3) == (16 << 20, sha256(data_a))
    assert jobs[3].join_result(DEADLINE * 3) == (16 << 20, sha256(data_b))
    b.close()


def test_workers_auto_runs_one_per_cpu(sockjoin, servers):
    backend = servers(handler=echo_handler)
    sj = sockjoin("--stats", "--workers", "auto", "listen:127.0.0.1:0", "connect:" + backend.addr)
    # The main thread, and one worker per CPU this process may run on (the
    # workers start just after the port is announced). libuv 1.44 counts
    # the CPUs of the affinity mask; later versions also heed cgroup quotas.
    cpus = min(len(os.sched_getaffinity(0)), 64)
    wait_for(lambda: len(os.listdir("/proc/%d/task" % sj.pid)) == 1 + cpus,
             what="%d threads" % (1 + cpus))
    for i in range(8):
        s = connect_tcp(sj.addr("A"))
        msg = b"auto %d" % i
        s.sendall(msg)
        assert recv_exact(s, len(msg)) == msg
        s.close()
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    stats = json.loads([l for l in sj.stderr_lines() if l.strip()][-1])
    assert stats["pairs"] == 8
