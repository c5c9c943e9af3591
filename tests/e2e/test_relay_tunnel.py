"""`sockjoin relay-tunnel`: programs that do not speak the relay protocol
reach a far service through `sockjoin relay`.

Every test runs a relay on 127.0.0.1:0 and two tunnel ends: "near" listens
for local connections, "far" connects to a service the test starts. Waits
are on log lines and socket events with deadlines, never on sleeps."""

import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (DEADLINE, Sockjoin, Worker, connect_tcp, echo_handler, expect_closed,
                      free_port, parse_hostport, recv_exact, recv_hash_until_eof, rst_close,
                      run_sockjoin, send_all_then_shutdown, sha256, wait_for)

SANITIZED = bool(os.environ.get("SOCKJOIN_SANITIZED"))
MIB = 1 << 20
UP = r"tunnel up: "


class Procs:
    """sockjoin processes of a test, stopped at teardown with the checks of
    conftest's sockjoin fixture, except that a process the test killed on
    purpose (kill()) may have died of it."""

    def __init__(self):
        self.all = []

    def __call__(self, *args):
        sj = Sockjoin(args)
        sj.killed = False
        self.all.append(sj)
        return sj

    @staticmethod
    def kill(sj):
        sj.killed = True
        sj.proc.kill()
        sj.wait_exit()

    def finish(self):
        problems = []
        for sj in self.all:
            rc = sj.stop()
            name = "sockjoin " + " ".join(sj.args)
            print("---- %s (status %s, %s) stderr ----" % (name, rc, sj.stop_how))
            print(sj.stderr_text())
            if sj.sanitizer_report():
                problems.append("sanitizer report from %s" % name)
            if sj.stop_how == "sigkill":
                problems.append("%s did not exit within %.0fs of SIGTERM" % (name, DEADLINE))
            elif rc != 0 and not sj.killed:
                problems.append("%s exited with status %s" % (name, rc))
        if problems:
            pytest.fail("\n".join(problems))


class Tunnel:
    """A relay and the two ends of a tunnel through it."""

    def __init__(self, sockjoin, service, near_args=(), far_args=(), relay_args=()):
        self.sockjoin = sockjoin
        self.service = service
        self.near_args, self.far_args = list(near_args), list(far_args)
        self.relay_args = list(relay_args)
        self.relay = self.start_relay("127.0.0.1:0")
        self.far = self.start_far()
        self.near = self.start_near()

    def start_relay(self, listen):
        relay = self.sockjoin("relay", "-v", "--listen", listen, *self.relay_args)
        line = relay.read_stdout_line()
        m = re.fullmatch(r"listening relay (\S+)", line)
        assert m, "unexpected relay stdout line %r" % line
        self.relay_addr = m.group(1)
        return relay

    def start_far(self):
        return self.sockjoin("relay-tunnel", "-v", "--relay", self.relay_addr, "--name", "far",
                             "--peer", "near", "--connect", self.service, *self.far_args)

    def start_near(self):
        near = self.sockjoin("relay-tunnel", "-v", "--relay", self.relay_addr, "--name", "near",
                             "--peer", "far", "--listen", "127.0.0.1:0", *self.near_args)
        line = near.read_stdout_line()
        m = re.fullmatch(r"listening tunnel (\S+)", line)
        assert m, "unexpected tunnel stdout line %r" % line
        self.addr = parse_hostport(m.group(1))
        return near

    def wait_up(self, count=1):
        self.near.wait_stderr(UP, count=count)
        self.far.wait_stderr(UP, count=count)

    def connect(self):
        return connect_tcp(self.addr)


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.finish()


@pytest.fixture
def tunnel(procs, servers):
    """Factory: tunnel(service=None, handler=echo_handler, ...) -> Tunnel,
    up. Without service, a Server with handler is started for it (.server)."""

    def start(service=None, handler=echo_handler, wait_up=True, **kw):
        server = None
        if service is None:
            server = servers(handler=handler)
            service = server.addr
        t = Tunnel(procs, service, **kw)
        t.server = server
        if wait_up:
            t.wait_up()
        return t

    return start


def echo_check(t, size=64 * 1024, seed=0):
    """One connection through the tunnel: size random bytes to the echo
    service and back, then both half-closes."""
    data = random.Random(seed).randbytes(size)
    s = t.connect()
    try:
        w = Worker(send_all_then_shutdown, s, data)
        w.start()
        n, digest = recv_hash_until_eof(s)
        w.join_result()
        assert n == len(data)
        assert digest == sha256(data)
    finally:
        s.close()


def expect_turned_away(t, payload=b""):
    """A local connection is closed at once: reset, or ended with nothing
    read. The reset may come so quickly that connect() itself reports it."""
    try:
        c = t.connect()
    except ConnectionResetError:
        return "reset"
    try:
        if payload:
            c.sendall(payload)
        kind, data = expect_closed(c)
        assert data == b""
        return kind
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        c.close()


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def test_16_mib_each_way_checked_by_hash(tunnel):
    """The far service sends 16 MiB of its own while it reads the client's
    16 MiB; each side checks what it got by hash."""
    up = random.Random(1).randbytes(16 * MIB)
    down = random.Random(2).randbytes(16 * MIB)
    got = {}

    def service(conn, index):
        w = Worker(send_all_then_shutdown, conn, down)
        w.start()
        got["n"], got["digest"] = recv_hash_until_eof(conn)
        w.join_result(DEADLINE * 4)
        conn.close()

    t = tunnel(handler=service)
    s = t.connect()
    w = Worker(send_all_then_shutdown, s, up)
    w.start()
    n, digest = recv_hash_until_eof(s, timeout=DEADLINE * 4)
    w.join_result(DEADLINE * 4)
    s.close()
    assert (n, digest) == (len(down), sha256(down))
    wait_for(lambda: "digest" in got, what="the service to read to EOF")
    assert (got["n"], got["digest"]) == (len(up), sha256(up))
    assert not t.server.errors


def test_twenty_concurrent_connections(tunnel):
    t = tunnel()
    workers = [Worker(echo_check, t, 512 * 1024 + i * 1000, i) for i in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join_result(DEADLINE * 2)
    t.server.wait_accepts(20)
    t.near.wait_stderr(r"pair \d+ closed", count=20)
    assert not t.server.errors


def test_half_close_both_ways(tunnel):
    t = tunnel(handler=None)
    # The client ends its direction first; the service still answers.
    c = t.connect()
    conn = t.server.accept_next()
    c.sendall(b"question")
    c.shutdown(socket.SHUT_WR)
    assert recv_exact(conn, 8) == b"question"
    assert conn.recv(16) == b""  # the FIN crossed the tunnel
    conn.sendall(b"answer")
    assert recv_exact(c, 6) == b"answer"
    conn.shutdown(socket.SHUT_WR)
    assert c.recv(16) == b""
    c.close()
    conn.close()
    # The service ends its direction first; the client still sends.
    c = t.connect()
    conn = t.server.accept_next()
    conn.sendall(b"banner")
    conn.shutdown(socket.SHUT_WR)
    assert recv_exact(c, 6) == b"banner"
    assert c.recv(16) == b""
    c.sendall(b"late words")
    assert recv_exact(conn, 10) == b"late words"
    c.shutdown(socket.SHUT_WR)
    assert conn.recv(16) == b""
    c.close()
    conn.close()


def test_reset_carried_both_ways(tunnel):
    t = tunnel(handler=None)
    # The client resets: the service's socket is reset too.
    c = t.connect()
    conn = t.server.accept_next()
    c.sendall(b"x")
    assert recv_exact(conn, 1) == b"x"
    rst_close(c)
    kind, _ = expect_closed(conn)
    assert kind == "reset"
    conn.close()
    # The service resets: the client's socket is reset.
    c = t.connect()
    conn = t.server.accept_next()
    conn.sendall(b"y")
    assert recv_exact(c, 1) == b"y"
    rst_close(conn)
    kind, _ = expect_closed(c)
    assert kind == "reset"
    c.close()


def test_stalled_connection_beside_a_busy_one(tunnel):
    """A client that stops reading holds up nobody: another connection
    moves 8 MiB meanwhile, and the tunnels' memory stays bounded."""
    stall_release = threading.Event()

    def service(conn, index):
        if index == 1:  # floods a client that never reads
            try:
                while not stall_release.is_set():
                    conn.sendall(b"z" * 65536)
            except OSError:
                pass
            conn.close()
            return
        echo_handler(conn, index)

    t = tunnel(handler=service)
    stalled = t.connect()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    t.server.wait_accepts(1)
    rss = {"near": t.near.rss_kib(), "far": t.far.rss_kib()}
    echo_check(t, 8 * MIB, seed=3)
    # Per connection a tunnel holds a window and a buffer or two (well under
    # 2 MiB), however much the service pushes.
    for name, proc in (("near", t.near), ("far", t.far)):
        grown = proc.rss_kib() - rss[name]
        assert grown < (64 if SANITIZED else 24) * 1024, "%s grew by %d KiB" % (name, grown)
    stall_release.set()
    stalled.close()


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------

def test_far_connect_failure_closes_the_client(tunnel):
    """The far end cannot reach its service: the local client is closed at
    once, and both ends say why."""
    t = tunnel(service="127.0.0.1:%d" % free_port())
    expect_turned_away(t, b"anyone there?")
    t.far.wait_stderr(r"B connect to 127\.0\.0\.1:\d+ failed: connection refused")
    t.near.wait_stderr(r"connection from 127\.0\.0\.1:\d+ refused by the far end")
    assert t.near.alive() and t.far.alive()


def test_no_far_end_closes_local_connections(tunnel):
    """With the far end absent the tunnel is down, and a local connection
    is closed at once rather than accepted into nothing."""
    t = tunnel()
    t.far.stop()  # it says goodbye
    t.near.wait_stderr(r"tunnel down: peer ended the session")
    expect_turned_away(t)
    t.near.wait_stderr(r"opening a new channel failed")


def test_relay_restarted_mid_run(tunnel):
    t = tunnel(handler=None)
    c = t.connect()
    conn = t.server.accept_next()
    c.sendall(b"before")
    assert recv_exact(conn, 6) == b"before"
    port = parse_hostport(t.relay_addr)[1]
    Procs.kill(t.relay)  # no goodbye to anyone
    # Open connections fail cleanly, at both ends.
    expect_closed(c)
    expect_closed(conn)
    c.close()
    conn.close()
    t.near.wait_stderr(r"tunnel down: ")
    t.far.wait_stderr(r"tunnel down: ")
    # While the relay is away, new connections are closed at once.
    expect_turned_away(t)
    # The relay comes back on its port; the tunnel follows.
    t.relay = t.start_relay("127.0.0.1:%d" % port)
    t.wait_up(count=2)
    c = t.connect()
    conn = t.server.accept_next()
    c.sendall(b"after")
    assert recv_exact(conn, 5) == b"after"
    conn.sendall(b"still here")
    assert recv_exact(c, 10) == b"still here"
    c.close()
    conn.close()


def test_far_end_restarted(tunnel):
    """The far end restarts: the near end notices its new session at once,
    ends the old one, and the tunnel comes back."""
    t = tunnel()
    echo_check(t, seed=5)
    Procs.kill(t.far)
    t.far = t.start_far()
    t.near.wait_stderr(r"tunnel down: ")
    t.near.wait_stderr(UP, count=2)
    t.far.wait_stderr(UP)
    echo_check(t, seed=6)


def test_messages_from_strangers_are_ignored(tunnel):
    """Anyone may message a tunnel end through the relay: what does not come
    from its peer is ignored (and noted with -v), and the tunnel goes on."""
    from relayclient import RelayClient
    t = tunnel()
    stranger = RelayClient(parse_hostport(t.relay_addr), "stranger")
    try:
        stranger.send("near", b"not for a tunnel")
        stranger.send("far", os.urandom(4000))
        t.near.wait_stderr(r"ignored a message of 16 bytes from stranger \(not the peer\)")
        t.far.wait_stderr(r"ignored a message of 4000 bytes from stranger")
        echo_check(t, seed=11)
        assert len(t.near.stderr_matches(UP)) == 1
    finally:
        stranger.close()


@pytest.mark.parametrize("role", ["--listen", "--connect"])
def test_two_ends_of_one_role_are_told(procs, servers, role):
    """Both ends listening (or both connecting) cannot work: each says so."""
    relay = procs("relay", "--listen", "127.0.0.1:0")
    raddr = re.fullmatch(r"listening relay (\S+)", relay.read_stdout_line()).group(1)
    where = "127.0.0.1:0" if role == "--listen" else servers().addr
    ends = [procs("relay-tunnel", "--relay", raddr, "--name", me, "--peer", other, role, where)
            for me, other in (("a", "b"), ("b", "a"))]
    verb = "listens for connections" if role == "--listen" else "connects to a service"
    for end, other in zip(ends, ("b", "a")):
        end.wait_stderr(r"relay link: the far end \(%s\) also %s: one end must listen and the "
                        r"other connect" % (other, verb))
        assert end.alive()


def test_keepalive_holds_an_idle_tunnel(tunnel):
    """An idle tunnel keeps its registrations through a relay that drops
    clients silent for a second, and still works afterwards."""
    quiet = ["--keepalive", "0.3", "--heartbeat", "60", "--heartbeat-timeout", "120"]
    t = tunnel(near_args=quiet, far_args=quiet, relay_args=["--idle-timeout", "1"])
    echo_check(t, seed=7)
    # Three idle timeouts later, nobody was dropped and the tunnel is up.
    t.relay.assert_running_for(3)
    assert not t.relay.stderr_matches(r"idle for")
    assert len(t.near.stderr_matches(UP)) == 1
    echo_check(t, seed=8)


# --------------------------------------------------------------------------
# A real protocol
# --------------------------------------------------------------------------

@pytest.fixture
def http_server():
    """python3 -m http.server on 127.0.0.1:0 serving a temporary directory
    with one random file; yields (address, file name, sha256)."""
    root = tempfile.mkdtemp(prefix="sj-http-")
    data = random.Random(9).randbytes(3 * MIB + 17)
    with open(os.path.join(root, "blob.bin"), "wb") as f:
        f.write(data)
    proc = subprocess.Popen(["python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", root], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"port (\d+)", line)
        assert m, "unexpected http.server output %r" % line
        yield "127.0.0.1:%s" % m.group(1), "blob.bin", sha256(data)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        shutil.rmtree(root, ignore_errors=True)


def test_http_with_curl(tunnel, http_server):
    service, name, digest = http_server
    t = tunnel(service=service)
    host, port = t.addr
    out = tempfile.mkdtemp(prefix="sj-curl-")
    try:
        # Several fetches, some in parallel on one curl.
        urls = ["http://%s:%d/%s" % (host, port, name)] * 4
        cmd = ["curl", "-sS", "--fail", "--max-time", str(int(DEADLINE * 2)), "--parallel"]
        for i, u in enumerate(urls):
            cmd += ["-o", os.path.join(out, "%d.bin" % i), u]
        r = subprocess.run(cmd, capture_output=True, timeout=DEADLINE * 3)
        assert r.returncode == 0, r.stderr
        for i in range(len(urls)):
            with open(os.path.join(out, "%d.bin" % i), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest
        r = subprocess.run(["curl", "-sS", "--fail", "http://%s:%d/" % (host, port)],
                           capture_output=True, timeout=DEADLINE)
        assert r.returncode == 0 and name.encode() in r.stdout
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------

USAGE_CASES = [
    ([], r"--relay HOST:PORT is required"),
    (["--relay", "127.0.0.1:1"], r"--name NAME is required"),
    (["--relay", "127.0.0.1:1", "--name", "a"], r"--peer NAME is required"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b"],
     r"one of --listen \[HOST:\]PORT or --connect HOST:PORT is required"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "a", "--listen", "0"],
     r"--name and --peer must differ"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0", "--connect",
      "127.0.0.1:2"], r"--listen and --connect cannot be used together"),
    (["--relay", "nowhere", "--name", "a", "--peer", "b", "--listen", "0"], r"bad --relay 'nowhere'"),
    (["--relay", "127.0.0.1:70000", "--name", "a", "--peer", "b", "--listen", "0"],
     r"bad --relay '127\.0\.0\.1:70000': .*port"),
    (["--relay", "127.0.0.1:1", "--name", "a|b", "--peer", "b", "--listen", "0"],
     r"bad --name 'a\|b': a name cannot contain '\|'"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "", "--listen", "0"],
     r"bad --peer '': a name cannot be empty"),
    (["--relay", "127.0.0.1:1", "--name", "x" * 256, "--peer", "b", "--listen", "0"],
     r"bad --name '.*': a name is at most 255 bytes"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "99999"],
     r"bad --listen '99999'"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--connect", "22"],
     r"bad --connect '22'"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0", "--max-message",
      "12"], r"bad --max-message '12': expected bytes from 1k to 1g"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0", "--keepalive",
      "-1"], r"bad --keepalive '-1': expected seconds > 0"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0", "--heartbeat",
      "10", "--heartbeat-timeout", "5"], r"--heartbeat-timeout must be longer than --heartbeat"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0",
      "--max-connections", "0"], r"bad --max-connections '0'"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0", "--frobnicate"],
     r"unknown option '--frobnicate'"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen"], r"--listen needs a value"),
    (["--relay", "127.0.0.1:1", "--name", "a", "--peer", "b", "--listen", "0", "extra"],
     r"unexpected argument 'extra'"),
]


@pytest.mark.parametrize("args,message", USAGE_CASES)
def test_usage_errors(args, message):
    r = run_sockjoin(["relay-tunnel"] + args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.decode()
    assert err.startswith("sockjoin relay-tunnel: "), err
    assert re.search(message, err), err
    assert r.stdout == b""


def test_help():
    r = run_sockjoin(["relay-tunnel", "--help"])
    assert r.returncode == 0
    assert b"--listen [HOST:]PORT" in r.stdout and b"--connect HOST:PORT" in r.stdout


def test_listen_port_in_use(servers):
    s = servers()
    r = run_sockjoin(["relay-tunnel", "--relay", "127.0.0.1:1", "--name", "a", "--peer", "b",
                      "--listen", s.addr])
    assert r.returncode == 1
    assert re.search(r"cannot listen on 127\.0\.0\.1:\d+: address already in use",
                     r.stderr.decode()), r.stderr


def test_unreachable_relay_is_retried(sockjoin):
    """A relay that is not there is tried again and again (with back-off),
    and the tunnel exits cleanly on a signal meanwhile."""
    port = free_port()
    near = sockjoin("relay-tunnel", "-v", "--relay", "127.0.0.1:%d" % port, "--name", "a",
                    "--peer", "b", "--listen", "127.0.0.1:0", "--retry-max", "0.5", wait=False)
    assert near.read_stdout_line().startswith("listening tunnel ")
    near.wait_stderr(r"relay link: cannot reach the relay at 127\.0\.0\.1:%d: connection refused"
                     % port, count=3)
    near.wait_stderr(r"trying the relay again in \d+ ms", count=3)
    near.signal(signal.SIGTERM)
    assert near.wait_exit() == 0
