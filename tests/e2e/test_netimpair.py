"""Through a bad network: loss, delay with jitter, reordering, duplication
and a link that goes dark without a word, made in user space by netimpair.py
between this namespace and one the test makes (this kernel has no netem).

Transfers are checked by hash and must come through intact; each test also
checks that the link really did drop, reorder and duplicate packets on the
way, so that a link that impaired nothing would fail it. Keep-alive and the
tunnels' heartbeats must find a silently dead path within their budget, and
ride out a short outage; after an outage the tunnels come back and carry new
connections intact.

Needs root, /dev/net/tun and `ip netns`; skipped where they are missing."""

import hashlib
import os
import random
import re
import socket
import subprocess
import time

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, echo_handler, expect_closed, recv_exact,
                      recv_hash_until_eof, send_all_then_shutdown, wait_for)
from netimpair import impaired_link  # noqa: F401 - the fixture

SANITIZED = bool(os.environ.get("SOCKJOIN_SANITIZED"))
MIB = 1 << 20
SIZE = (1 if SANITIZED else 4) * MIB
# Each way: 3 % loss, 5-15 ms delay (so 10-30 ms round trips), jitter well
# over the gap between packets (so they overtake each other), 2 % of packets
# held back behind the next and 2 % delivered twice.
LOSSY = dict(loss=0.03, delay=0.005, jitter=0.010, reorder=0.02, duplicate=0.02)


def echo_through(addr, size, seed, timeout=DEADLINE * 4):
    """size random bytes to an echo service at addr and back, sent and read
    at once, then half-closed; both ways checked by hash."""
    data = random.Random(seed).randbytes(size)
    s = connect_tcp(addr)
    try:
        w = Worker(send_all_then_shutdown, s, data)
        w.start()
        got = recv_hash_until_eof(s, timeout)
        w.join_result(timeout)
    finally:
        s.close()
    assert got == (size, hashlib.sha256(data).hexdigest()), "seed %d: not intact" % seed


def assert_impaired(link):
    """The link did drop, reorder and duplicate packets."""
    c = link.counters()
    print("link counters: %s" % c)
    assert c["dropped"] > 0 and c["reordered"] > 0 and c["duplicated"] > 0, c


# --------------------------------------------------------------------------
# Transfers through loss
# --------------------------------------------------------------------------

def test_join_through_a_lossy_link(impaired_link, sockjoin):
    link = impaired_link
    echo = link.ns_echo_server()
    sj = sockjoin("-v", "listen:127.0.0.1:0", "connect:" + echo)
    link.set(**LOSSY)
    t0 = time.monotonic()
    echo_through(sj.addr("A"), SIZE, 1)
    print("%d MiB each way in %.1fs" % (SIZE // MIB, time.monotonic() - t0))
    assert_impaired(link)
    sj.wait_stderr(r"pair 1 closed")


# --------------------------------------------------------------------------
# Secure sides and the rendezvous: the lossy hop carries ciphertext between
# a sockjoin here and one in the namespace
# --------------------------------------------------------------------------

def make_cert(d):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=DEADLINE)
    return cert, key


def secret(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


@pytest.mark.parametrize("layer", ["tls", "encrypt"])
def test_secure_sides_across_a_lossy_link(impaired_link, sockjoin, short_tmp, layer):
    """client -> [sockjoin] ==(TLS | encrypt=) over the lossy link==> [sockjoin
    in the namespace] -> echo in the namespace."""
    link = impaired_link
    echo = link.ns_echo_server("127.0.0.1")
    if layer == "tls":
        cert, key = make_cert(short_tmp)
        far_opts, near_opts = ",tls,cert=%s,key=%s" % (cert, key), ",tls,ca=%s,sni=localhost" % cert
    else:
        psk = secret(short_tmp, "psk", "a passphrase both ends know")
        far_opts = near_opts = ",encrypt=psk:" + psk
    far = sockjoin("-v", "listen:%s:0%s" % (link.ns_ip, far_opts), "connect:" + echo,
                   prefix=link.exec_prefix)
    near = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s%s" % (far.listening["A"], near_opts))
    link.set(**LOSSY)
    workers = [Worker(echo_through, near.addr("A"), SIZE // 2, seed) for seed in (10, 11)]
    for w in workers:
        w.start()
    for w in workers:
        w.join_result(DEADLINE * 4)
    assert_impaired(link)
    far.wait_stderr(r"pair \d+ closed", count=2)
    assert not far.stderr_matches(r"refused") and not near.stderr_matches(r"refused")


def test_rendezvous_with_auth_and_encrypt_across_a_lossy_link(impaired_link, sockjoin, short_tmp):
    """The README's rendezvous: a relay here, the device in the namespace
    dialling out to it across the lossy link (--persist), a client here."""
    link = impaired_link
    echo = link.ns_echo_server("127.0.0.1")
    hk = secret(short_tmp, "hmac", "rendezvous key")
    opts = ",auth=hmac:%s,encrypt=psk:%s" % (hk, secret(short_tmp, "psk", "end to end"))
    relay = sockjoin("-v", "listen:127.0.0.1:0,auth=hmac:" + hk,
                     "listen:%s:0,auth=hmac:%s" % (link.root_ip, hk))
    link.set(**LOSSY)
    sockjoin("-v", "--persist", "2", "connect:" + echo, "connect:" + relay.listening["B"] + opts,
             wait=False, prefix=link.exec_prefix)
    client = sockjoin("-v", "listen:127.0.0.1:0", "connect:" + relay.listening["A"] + opts)
    # Session after session: the device replaces each standing connection.
    for seed in (20, 21, 22):
        echo_through(client.addr("A"), SIZE // 2, seed)
    assert_impaired(link)
    relay.wait_stderr(r"pair 3 closed")
    assert not relay.stderr_matches(r"refused")


# --------------------------------------------------------------------------
# The tunnels: the relay, or the agent, on the far side of the lossy link
# --------------------------------------------------------------------------

CONNS = 4 if SANITIZED else 8
FAST_HEARTBEAT = ["--heartbeat", "0.2", "--heartbeat-timeout", "1"]


def first_line(proc, pattern):
    line = proc.read_stdout_line()
    m = re.fullmatch(pattern, line)
    assert m, "unexpected stdout line %r" % line
    return m.group(1)


def many_through(addr, conns, size, seed):
    """conns connections at once through addr to an echo service, each
    carrying size bytes both ways, each checked by hash."""
    workers = [Worker(echo_through, addr, size, seed + i) for i in range(conns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join_result(DEADLINE * 6)


def start_relay_tunnel(link, sockjoin, service, *extra, relay_args=()):
    """A relay in the namespace; both ends here, each reaching it across the
    link. Returns (relay, near, far, near's listening address)."""
    relay = sockjoin("relay", "-v", "--listen", link.ns_ip + ":0", *relay_args, wait=False,
                     prefix=link.exec_prefix)
    raddr = first_line(relay, r"listening relay (\S+)")
    far = sockjoin("relay-tunnel", "-v", "--relay", raddr, "--name", "far", "--peer", "near",
                   "--connect", service, *extra, wait=False)
    near = sockjoin("relay-tunnel", "-v", "--relay", raddr, "--name", "near", "--peer", "far",
                    "--listen", "127.0.0.1:0", *extra, wait=False)
    addr = first_line(near, r"listening tunnel (\S+)")
    near.wait_stderr(r"tunnel up: ")
    far.wait_stderr(r"tunnel up: ")
    return relay, near, far, addr


def test_relay_tunnel_across_a_lossy_link(impaired_link, sockjoin, servers):
    link = impaired_link
    service = servers(handler=echo_handler)
    link.set(**LOSSY)
    _, near, far, addr = start_relay_tunnel(link, sockjoin, service.addr)
    many_through(addr, CONNS, SIZE // 4, 30)
    assert_impaired(link)
    assert len(near.stderr_matches(r"tunnel up: ")) == 1  # never went down


def echo_through_or_cut(addr, size, seed):
    """echo_through for a connection an outage may cut: it comes through
    intact, or it is reset (never cut short with a clean end, or corrupted)."""
    try:
        echo_through(addr, size, seed)
        return "intact"
    except ConnectionError:
        return "reset"


def test_relay_tunnel_old_link_failing_after_its_session_ended(impaired_link, sockjoin, servers):
    """A session ended by its heartbeat lingers (up to 2 s) to send a last
    GOAWAY on its link, which busy channels have filled. Here that old link
    fails meanwhile: the relay dropped it while the path was dark, and the
    reset comes once the path is back, when the end is reconnecting or
    already up again. That is old news: no second "tunnel down", no touching
    the new attempt or session. (The tunnel took it for its pending
    attempt's failure: it closed the stream the old session still owned, a
    use-after-free when the linger ran out, and started a second attempt;
    or, with the new session up, it logged a tunnel down that was not, and
    then kept quiet about the next real one.)"""
    link = impaired_link
    service = servers(handler=echo_handler)
    extra = FAST_HEARTBEAT + ["--keepalive", "0.3", "--retry-max", "0.5", "--connect-timeout", "1"]
    relay, near, far, addr = start_relay_tunnel(link, sockjoin, service.addr, *extra,
                                                relay_args=["--idle-timeout", "1"])
    outages = 2
    for n in range(1, outages + 1):
        busy = [Worker(echo_through_or_cut, addr, 8 * MIB, 100 * n + i) for i in range(8)]
        for w in busy:
            w.start()
        start = link.counters()["forwarded"]
        wait_for(lambda: link.counters()["forwarded"] > start + 300, what="the channels to fill")
        link.blackhole()
        for end in (near, far):
            end.wait_stderr(r"tunnel down: .*no frame from the peer", count=n)
        for name in ("near", "far"):  # the relay drops the silent links
            relay.wait_stderr(r"'%s' \(.*\): (idle for|.*closing)" % name, count=n)
        link.blackhole(False)
        for end in (near, far):
            end.wait_stderr(r"tunnel up: ", count=n + 1)
        print("outage %d: %s" % (n, [w.join_result(DEADLINE * 2) for w in busy]))
        echo_through(addr, SIZE // 4, 100 * n + 99)
    near.assert_running_for(2.5)  # past the old sessions' linger
    for end in (near, far):
        assert len(end.stderr_matches(r"tunnel down: ")) == outages
        assert len(end.stderr_matches(r"tunnel up: ")) == outages + 1
        assert not end.stderr_matches(r"relay link: (the relay closed|.*reset by peer)")


def start_expose(link, sockjoin, local, *extra, server_args=()):
    """A server here, the agent in the namespace dialling it across the
    link; returns (server, agent, public address here, tunnel id)."""
    env = dict(os.environ, SOCKJOIN_API_KEYS="netimpair-key", SOCKJOIN_API_KEY="netimpair-key")
    srv = sockjoin("server", "-v", "--listen", link.root_ip + ":0", "--public-bind", "127.0.0.1",
                   "--public-host", "127.0.0.1",
                   *server_args, wait=False, env=env)
    saddr = first_line(srv, r"listening server (\S+)")
    agent = sockjoin("expose", "-v", local, "--server", saddr, *extra, wait=False, env=env,
                     prefix=link.exec_prefix)
    m = re.fullmatch(r"exposed \S+ at tcp://(\S+) tunnel=(\d+)", agent.read_stdout_line())
    assert m
    return srv, agent, m.group(1), int(m.group(2))


def test_expose_across_a_lossy_link(impaired_link, sockjoin):
    link = impaired_link
    local = link.ns_echo_server("127.0.0.1")
    link.set(**LOSSY)
    _, agent, public, _ = start_expose(link, sockjoin, local)
    many_through(public, CONNS, SIZE // 4, 40)
    assert_impaired(link)
    assert not agent.stderr_matches(r"connection to the server lost")


def test_relay_tunnel_heartbeat_finds_a_blackholed_link_and_recovers(impaired_link, sockjoin,
                                                                     servers):
    """The link goes dark: both ends find the other silent within
    heartbeat-timeout (+ a heartbeat and slack); once it is back they
    register again (the relay drops their old, silent connections) and
    the tunnel carries a new connection intact."""
    link = impaired_link
    service = servers(handler=echo_handler)
    extra = FAST_HEARTBEAT + ["--keepalive", "0.3", "--retry-max", "0.5", "--connect-timeout", "1"]
    _, near, far, addr = start_relay_tunnel(link, sockjoin, service.addr, *extra,
                                            relay_args=["--idle-timeout", "2"])
    echo_through(addr, 64 * 1024, 50)
    link.blackhole()
    t0 = time.monotonic()
    for end in (near, far):
        end.wait_stderr(r"tunnel down: .*no frame from the peer")
    elapsed = time.monotonic() - t0
    assert elapsed < 1 + 0.2 + 3, elapsed
    assert link.counters()["blackholed"] > 0
    link.blackhole(False)
    link.set(**LOSSY)
    near.wait_stderr(r"tunnel up: ", count=2)
    far.wait_stderr(r"tunnel up: ", count=2)
    echo_through(addr, SIZE // 4, 51)
    assert_impaired(link)


def test_expose_heartbeat_finds_a_blackholed_link_and_recovers(impaired_link, sockjoin):
    """The link goes dark: the agent and the server each find the other
    silent within heartbeat-timeout (+ a heartbeat and slack); once it is
    back the agent reconnects, gets the same port and tunnel, and a new
    connection through it is intact."""
    link = impaired_link
    local = link.ns_echo_server("127.0.0.1")
    srv, agent, public, tid = start_expose(
        link, sockjoin, local, *FAST_HEARTBEAT, "--retry-max", "0.5", "--connect-timeout", "1",
        "--handshake-timeout", "2", server_args=FAST_HEARTBEAT)
    echo_through(public, 64 * 1024, 60)
    link.blackhole()
    t0 = time.monotonic()
    agent.wait_stderr(r"connection to the server lost: no frame from the peer")
    srv.wait_stderr(r"agent \d+ \(.*\): gone: no frame from the peer")
    elapsed = time.monotonic() - t0
    assert elapsed < 1 + 0.2 + 3, elapsed
    assert link.counters()["blackholed"] > 0
    link.blackhole(False)
    link.set(**LOSSY)
    m = re.fullmatch(r"exposed \S+ at tcp://(\S+) tunnel=(\d+)", agent.read_stdout_line())
    assert m and (m.group(1), int(m.group(2))) == (public, tid), m
    echo_through(public, SIZE // 4, 61)
    assert_impaired(link)


# --------------------------------------------------------------------------
# TCP keep-alive of a join: a dead path found, a short outage ridden out
# --------------------------------------------------------------------------

def echo_on(sock, size, seed):
    """size bytes to the echo service on an open connection and back (no
    half-close), both ways checked by hash."""
    data = random.Random(seed).randbytes(size)
    w = Worker(sock.sendall, data)
    w.start()
    h, n = hashlib.sha256(), 0
    while n < size:
        chunk = recv_exact(sock, min(size - n, 1 << 16), DEADLINE * 4)
        h.update(chunk)
        n += len(chunk)
    w.join_result()
    assert h.hexdigest() == hashlib.sha256(data).hexdigest(), "seed %d: not intact" % seed


def test_keepalive_finds_a_blackholed_peer(impaired_link, sockjoin, sockets):
    """The path to the peer goes dark, with no link down and no reset: keep-
    alive finds the peer dead after idle + interval x count seconds of
    silence and closes the pair."""
    link = impaired_link
    echo = link.ns_echo_server()
    idle, interval, count = 1, 1, 2
    sj = sockjoin("-v", "--keepalive", "%d,%d,%d" % (idle, interval, count),
                  "listen:127.0.0.1:0", "connect:" + echo)
    a = sockets(connect_tcp(sj.addr("A")))
    sj.wait_stderr(r"pair 1 formed")
    echo_on(a, 1000, 70)  # the last word from the peer
    link.blackhole()
    t0 = time.monotonic()
    sj.wait_stderr(r"pair 1 closed: .*connection timed out")
    elapsed = time.monotonic() - t0
    budget = idle + interval * count
    assert budget - 0.5 < elapsed < budget + 5, elapsed
    # The probes were sent, and vanished.
    assert link.counters("out")["blackholed"] >= count
    expect_closed(a)
    assert sj.alive()


def test_keepalive_rides_out_a_short_blackhole(impaired_link, sockjoin, sockets):
    """Outages shorter than the keep-alive budget (idle + interval x count =
    5 s): one mid-transfer, one while idle (keep-alive probes go into it).
    The pair survives both and carries data intact afterwards."""
    link = impaired_link
    echo = link.ns_echo_server()
    sj = sockjoin("-v", "--keepalive", "1,1,4", "listen:127.0.0.1:0", "connect:" + echo)
    a = sockets(connect_tcp(sj.addr("A")))
    sj.wait_stderr(r"pair 1 formed")
    link.set(**LOSSY)
    # Mid-transfer: the link goes dark once some of the data has crossed.
    w = Worker(echo_on, a, SIZE, 80)
    w.start()
    start = link.counters()["forwarded"]
    wait_for(lambda: link.counters()["forwarded"] > start + 300, what="the transfer to start")
    link.blackhole_for(2)
    link.wait_healed(DEADLINE)
    w.join_result(DEADLINE * 4)
    # While idle: keep-alive probes go into the dark, and one is answered
    # once the link is back.
    before = link.counters("out")["blackholed"]
    link.blackhole_for(2.5)
    link.wait_healed(DEADLINE)
    assert link.counters("out")["blackholed"] > before, "no keep-alive probe was sent"
    echo_on(a, SIZE // 4, 81)
    assert_impaired(link)
    a.shutdown(socket.SHUT_WR)
    assert recv_hash_until_eof(a)[0] == 0
    sj.wait_stderr(r"pair 1 closed: A->B %d bytes, B->A %d bytes" % (SIZE * 5 // 4, SIZE * 5 // 4))
    assert not sj.stderr_matches(r"timed out")
