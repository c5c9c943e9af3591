"""Soak with integrity: 64 pairs at once, 16 MiB each way, random chunk sizes
and stalling readers, checked by hash, through the zero-copy path and the
copy path; afterwards the relay's descriptors and memory are back to where
they started."""

import hashlib
import os
import random
import re
import socket
import subprocess

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, parse_hostport, recv_jittery_hash,
                      wait_for)

PAIRS = 64
READS = (4096, 65536, 262144)  # read sizes of the stalling readers
SIZE = 16 << 20
LL = ("listen:127.0.0.1:0", "listen:127.0.0.1:0")


def rotated(buf, off):
    return buf[off:] + buf[:off]


def send_rotated(sock, buf, off, seed):
    """Sends buf rotated by off in random slices, then half-closes."""
    rng = random.Random(seed)
    view = memoryview(rotated(buf, off))
    pos = 0
    while pos < len(view):
        n = rng.choice((1, 1000, 16384, 65536, 262144))
        sock.sendall(view[pos:pos + n])
        pos += n
    sock.shutdown(socket.SHUT_WR)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def soak_transfers(pairs, buf):
    """Every pair carries buf, rotated per pair and direction, both ways at
    once, with random write sizes and stalling readers; checked by hash."""
    jobs, expect = [], []
    for i, (a, b) in enumerate(pairs):
        off_a, off_b = (i * 7919) % SIZE, (i * 104729 + 1) % SIZE
        expect.append((hashlib.sha256(rotated(buf, off_a)).hexdigest(),
                       hashlib.sha256(rotated(buf, off_b)).hexdigest()))
        jobs.append((Worker(send_rotated, a, buf, off_a, i), Worker(send_rotated, b, buf, off_b, -i),
                     Worker(recv_jittery_hash, b, 2 * i, DEADLINE * 8, READS, 0.01),
                     Worker(recv_jittery_hash, a, 2 * i + 1, DEADLINE * 8, READS, 0.01)))
    for group in jobs:
        for w in group:
            w.start()
    for i, group in enumerate(jobs):
        group[0].join_result(DEADLINE * 8)
        group[1].join_result(DEADLINE * 8)
        assert group[2].join_result(DEADLINE * 8) == (len(buf), expect[i][0]), "pair %d A->B" % i
        assert group[3].join_result(DEADLINE * 8) == (len(buf), expect[i][1]), "pair %d B->A" % i
    for a, b in pairs:
        a.close()
        b.close()


@pytest.mark.parametrize("path", [(), ("--no-splice",)], ids=["splice", "copy"])
def test_soak_64_pairs_16mib_each_way(sockjoin, path):
    sj = sockjoin(*path, "-v", *LL)
    fds_before, rss_before = fd_count(sj.pid), sj.rss_kib()
    buf = os.urandom(SIZE)
    pairs = []
    for i in range(PAIRS):  # A_i then B_i, so pair i joins them (FIFO)
        a = connect_tcp(sj.addr("A"))
        b = connect_tcp(sj.addr("B"))
        pairs.append((a, b))
    wait_for(lambda: len(sj.stderr_matches(r"pair \d+ formed")) == PAIRS, what="64 pairs")
    soak_transfers(pairs, buf)
    wait_for(lambda: len(sj.stderr_matches(r"pair \d+ closed")) == PAIRS, what="64 pairs closed")
    # The zero-copy path makes one pipe on first use and keeps it: two
    # descriptors for the whole process, whatever the number of pairs.
    kept = 0 if path else 2
    wait_for(lambda: fd_count(sj.pid) == fds_before + kept, what="descriptors back to baseline")
    # What stays is the few idle chunks the pool keeps and the allocator's
    # own caches, not anything per pair or per byte relayed.
    print("soak (%s): fds %d -> %d, RSS %d -> %d KiB"
          % ("copy" if path else "splice", fds_before, fd_count(sj.pid), rss_before, sj.rss_kib()))
    # Under AddressSanitizer freed memory sits in its quarantine by design;
    # LeakSanitizer checks that run for leaks at exit instead.
    if not os.environ.get("SOCKJOIN_SANITIZED"):
        assert sj.rss_kib() - rss_before < 8 * 1024, (rss_before, sj.rss_kib())
    assert sj.alive()


# Through the secure layers: a relay in the middle, a front on each side.
# Under the sanitizers (several times slower) the secure soak is smaller.
SECURE_PAIRS = 16 if os.environ.get("SOCKJOIN_SANITIZED") else PAIRS
SECURE_SIZE = (4 << 20) if os.environ.get("SOCKJOIN_SANITIZED") else SIZE


def make_cert(tmp):
    key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("layer", ["tls", "encrypt"])
def test_soak_through_secure_layers(sockjoin, short_tmp, layer):
    """plain -> front -> (TLS | encrypt=) -> relay -> (TLS | encrypt=) -> front -> plain,
    twice over. With TLS the relay terminates and re-originates it; with
    encrypt= the relay only ever carries ciphertext between the two fronts.
    Afterwards descriptors are back to baseline and memory is under a
    ceiling."""
    if layer == "tls":
        cert, key = make_cert(short_tmp)
        relay_side = "listen:127.0.0.1:0,tls,cert=%s,key=%s" % (cert, key)
        relay = sockjoin("-v", relay_side, relay_side)
        front_opts = ",tls,ca=%s,sni=localhost" % cert
    else:
        psk = os.path.join(short_tmp, "psk")
        with open(psk, "w") as f:
            f.write("soak passphrase\n")
        relay = sockjoin("-v", *LL)
        front_opts = ",encrypt=psk:" + psk
    fronts = [sockjoin("-v", "listen:127.0.0.1:0", "connect:" + relay.listening[side] + front_opts)
              for side in ("A", "B")]
    watched = [relay] + fronts
    fds_before = [fd_count(p.pid) for p in watched]
    buf = os.urandom(SECURE_SIZE)
    rss = []
    for rnd in range(int(os.environ.get("SOAK_ROUNDS", "2"))):
        secure_round(relay, fronts, buf, rnd)
        for p in watched:
            wait_for(lambda p=p: len(p.stderr_matches(r"pair \d+ closed")) == (rnd + 1) * SECURE_PAIRS,
                     what="pairs closed")
        rss.append([p.rss_kib() for p in watched])
    # A plain relay (the encrypt= case) splices: its one pipe stays.
    kept = [2 if layer == "encrypt" else 0, 0, 0]
    for p, fds, k in zip(watched, fds_before, kept):
        wait_for(lambda p=p, n=fds + k: fd_count(p.pid) == n, what="descriptors back to baseline")
    print("secure soak (%s): RSS KiB after each round %s" % (layer, rss))
    # After a round the allocator keeps some of the round's peak (glibc, with
    # OpenSSL's many small allocations between the pool's chunks), so RSS
    # wanders between rounds (16 to 36 MiB measured over five rounds, with
    # no trend). What is asserted is the ceiling: a leak of anything per pair
    # or per byte would pass it within a round or two.
    if not os.environ.get("SOCKJOIN_SANITIZED"):
        assert max(max(r) for r in rss) < 48 * 1024, rss
    assert not relay.stderr_matches(r"refused")


def secure_round(relay, fronts, buf, rnd):
    pairs = []
    for i in range(SECURE_PAIRS):
        # One pair at a time: the relay pairs in the order the fronts' own
        # connections reach it, which concurrent connects would not fix.
        n = rnd * SECURE_PAIRS + i + 1
        a = connect_tcp(fronts[0].addr("A"))
        relay.wait_stderr(r"A accepted", count=n)
        b = connect_tcp(fronts[1].addr("A"))
        relay.wait_stderr(r"pair %d formed" % n)
        pairs.append((a, b))
    soak_transfers(pairs, buf)


# Through the tunnels: each far-side connection is taken from a plain server
# of the test's own, so pair i is (the i-th connection into the tunnel, the
# i-th one out of it).
TUNNEL_PAIRS = 16 if os.environ.get("SOCKJOIN_SANITIZED") else PAIRS
TUNNEL_SIZE = (4 << 20) if os.environ.get("SOCKJOIN_SANITIZED") else SIZE


def tunnel_round(connect, server):
    pairs = []
    for _ in range(TUNNEL_PAIRS):
        a = connect()
        b = server.accept_next()
        pairs.append((a, b))
    return pairs


@pytest.mark.parametrize("kind", ["relay-tunnel", "expose"])
def test_soak_through_tunnels(sockjoin, servers, kind):
    """64 pairs x 16 MiB each way through a tunnel, hash-checked, with
    stalling readers; then every process's descriptors are back."""
    server = servers()
    if kind == "relay-tunnel":
        relay = sockjoin("relay", "--listen", "127.0.0.1:0", wait=False)
        raddr = re.fullmatch(r"listening relay (\S+)", relay.read_stdout_line()).group(1)
        far = sockjoin("relay-tunnel", "--relay", raddr, "--name", "far", "--peer", "near",
                       "--connect", server.addr, wait=False)
        near = sockjoin("relay-tunnel", "-v", "--relay", raddr, "--name", "near", "--peer", "far",
                        "--listen", "127.0.0.1:0", wait=False)
        addr = parse_hostport(re.fullmatch(r"listening tunnel (\S+)",
                                           near.read_stdout_line()).group(1))
        near.wait_stderr(r"tunnel up: ")
        watched = [relay, far, near]
    else:
        env = dict(os.environ, SOCKJOIN_API_KEYS="soak-key", SOCKJOIN_API_KEY="soak-key")
        srv = sockjoin("server", "--listen", "127.0.0.1:0", "--public-bind", "127.0.0.1",
                       wait=False, env=env)
        saddr = re.fullmatch(r"listening server (\S+)", srv.read_stdout_line()).group(1)
        agent = sockjoin("expose", server.addr, "--server", saddr, wait=False, env=env)
        line = agent.read_stdout_line()
        addr = parse_hostport(re.search(r"at tcp://(\S+) tunnel=", line).group(1))
        watched = [srv, agent]
    fds_before = [fd_count(p.pid) for p in watched]
    buf = os.urandom(TUNNEL_SIZE)
    soak_transfers(tunnel_round(lambda: connect_tcp(addr), server), buf)
    for p, fds in zip(watched, fds_before):
        wait_for(lambda p=p, n=fds: fd_count(p.pid) == n,
                 what="descriptors back to baseline (%d)" % fds)
    print("tunnel soak (%s): RSS KiB %s" % (kind, [p.rss_kib() for p in watched]))
