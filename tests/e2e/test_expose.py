"""sockjoin server and sockjoin expose: local ports exposed through a
central server over one multiplexed control connection.

Real peers: ncat --broker (the seed's own demo), python's http.server and
curl, python services moving hashed random data, TLS with certificates made
here by the openssl CLI. Every process listens on port 0 and its port is
read from what it prints (ncat cannot: it gets a port from free_port()).
"""

import contextlib
import hashlib
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import (DEADLINE, Sockjoin, Worker, connect_tcp, expect_closed, free_port,
                      parse_hostport, recv_exact, recv_hash_until_eof, rst_close, run_sockjoin,
                      send_all_then_shutdown, wait_for)

KEY = "k3y-for-tests"
EXPOSED_RE = re.compile(r"exposed (\S+) at tcp://(\S+):(\d+) tunnel=(\d+)")


@pytest.fixture
def killable():
    """Like the sockjoin fixture (without waiting for listening lines), for
    processes a test kills on purpose: at teardown they are stopped, and only
    a sanitizer report fails the test."""
    procs = []

    def start(*args, env=None, wait=False):
        sj = Sockjoin(args, env=env)
        procs.append(sj)
        return sj

    yield start
    reports = []
    for sj in procs:
        sj.stop()
        print("---- sockjoin %s (status %s) stderr ----" % (" ".join(sj.args), sj.proc.returncode))
        print(sj.stderr_text())
        if sj.sanitizer_report():
            reports.append(sj.sanitizer_report())
    if reports:
        pytest.fail("\n\n".join(reports))


def env_with(**kv):
    env = dict(os.environ)
    for k in ("SOCKJOIN_API_KEY", "SOCKJOIN_API_KEYS"):
        env.pop(k, None)
    env.update(kv)
    return env


def start_server(sockjoin, *extra, keys=KEY):
    """A server on a free loopback port, public ports on loopback too.
    Returns (process, 'HOST:PORT')."""
    env = env_with(SOCKJOIN_API_KEYS=keys) if keys else env_with()
    args = ["server", "--listen", "127.0.0.1:0", "--public-bind", "127.0.0.1"] + list(extra)
    if not keys and "--no-auth" not in extra:
        args.append("--no-auth")
    proc = sockjoin(*args, wait=False, env=env)
    line = proc.read_stdout_line()
    m = re.fullmatch(r"listening server (\S+)", line)
    assert m, "unexpected first line %r" % line
    return proc, m.group(1)


def start_agent(sockjoin, locals_, server, *extra, key=KEY):
    """An agent exposing each of locals_; returns (process, [(host, port, id)])."""
    env = env_with(SOCKJOIN_API_KEY=key) if key else env_with()
    proc = sockjoin("expose", *locals_, "--server", server, *extra, wait=False, env=env)
    return proc, [read_exposed(proc, local) for local in locals_]


def read_exposed(proc, local):
    line = proc.read_stdout_line()
    m = EXPOSED_RE.fullmatch(line)
    assert m, "unexpected stdout line %r" % line
    assert m.group(1) == local
    return m.group(2), int(m.group(3)), int(m.group(4))


def echo_server(servers):
    def handler(conn, index):
        with contextlib.suppress(OSError):
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        conn.close()
    return servers(handler=handler)


def roundtrip(addr, payload=b"ping through the tunnel\n"):
    with connect_tcp(addr) as s:
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload


# --------------------------------------------------------------------------
# The seed's demo and ordinary services
# --------------------------------------------------------------------------

def test_ncat_broker_chat(sockjoin):
    """Two clients chat through the public port of an exposed ncat --broker."""
    port = free_port()
    ncat = subprocess.Popen(["ncat", "-v", "--broker", "--listen", "127.0.0.1", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        accepted = []
        cond = threading.Condition()

        def read_ncat():
            for line in ncat.stderr:
                with cond:
                    accepted.append(line)
                    cond.notify_all()
        threading.Thread(target=read_ncat, daemon=True).start()

        def connections():
            with cond:
                return sum("Connection from" in l for l in accepted)
        wait_for(lambda: "Listening on" in "".join(accepted), what="ncat to listen")
        _, server = start_server(sockjoin)
        _, [(host, pub, _)] = start_agent(sockjoin, ["127.0.0.1:%d" % port], server)
        assert host == "127.0.0.1"
        c1 = connect_tcp((host, pub))
        c2 = connect_tcp((host, pub))
        # The broker relays only between clients it has accepted.
        wait_for(lambda: connections() >= 2, what="ncat to accept both clients")
        c1.sendall(b"hello from one\n")
        assert recv_exact(c2, 15) == b"hello from one\n"
        c2.sendall(b"and back from two\n")
        assert recv_exact(c1, 18) == b"and back from two\n"
        c1.close()
        c2.close()
    finally:
        ncat.kill()
        ncat.wait(10)


def test_http_server_fetched_with_curl(sockjoin):
    http = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", os.path.dirname(os.path.abspath(__file__))],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        m = re.search(r"port (\d+)", http.stdout.readline())
        assert m, "http.server did not say its port"
        _, server = start_server(sockjoin)
        _, [(host, pub, _)] = start_agent(sockjoin, ["127.0.0.1:" + m.group(1)], server)
        with open(os.path.abspath(__file__), "rb") as f:
            want = f.read()
        for _ in range(30):
            got = subprocess.run(["curl", "-sS", "--max-time", str(DEADLINE),
                                  "http://%s:%d/test_expose.py" % (host, pub)],
                                 capture_output=True, timeout=DEADLINE + 5)
            assert got.returncode == 0, got.stderr
            assert got.stdout == want
    finally:
        http.kill()
        http.wait(10)


def test_two_ports_one_agent_and_a_second_agent(sockjoin, servers):
    a, b, c = echo_server(servers), echo_server(servers), echo_server(servers)
    srv, server = start_server(sockjoin, "-v")
    _, tunnels = start_agent(sockjoin, [a.addr, b.addr], server)
    _, [third] = start_agent(sockjoin, [c.addr], server)
    ports = {t[1] for t in tunnels + [third]}
    assert len(ports) == 3
    for host, port, _ in tunnels + [third]:
        roundtrip((host, port))
    assert a.accepts == 1 and b.accepts == 1 and c.accepts == 1
    srv.wait_stderr(r"agent 2 \(127\.0\.0\.1:\d+\): authenticated with key 1")


# --------------------------------------------------------------------------
# Data: integrity, half-close, one stalled stream beside a busy one
# --------------------------------------------------------------------------

SIZE = 16 << 20
STREAMS = 20


def test_16mib_each_way_over_20_streams(sockjoin, servers):
    """Each stream carries 16 MiB of random data each way at once; each side
    half-closes after sending, so the end crosses the tunnel both ways."""
    got = {}
    lock = threading.Lock()

    def service(conn, index):
        data = random.Random(1000 + index).randbytes(SIZE)
        w = Worker(send_all_then_shutdown, conn, data)
        w.start()
        n, h = recv_hash_until_eof(conn, timeout=DEADLINE * 8)
        w.join_result(DEADLINE * 8)
        conn.close()
        with lock:
            got[index] = (hashlib.sha256(data).hexdigest(), n, h)

    local = servers(handler=service)
    _, server = start_server(sockjoin)
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server)

    def client(i):
        data = random.Random(i).randbytes(SIZE)
        s = connect_tcp((host, pub))
        w = Worker(send_all_then_shutdown, s, data)
        w.start()
        n, h = recv_hash_until_eof(s, timeout=DEADLINE * 8)
        w.join_result(DEADLINE * 8)
        s.close()
        return hashlib.sha256(data).hexdigest(), n, h

    workers = [Worker(client, i) for i in range(STREAMS)]
    for w in workers:
        w.start()
    results = [w.join_result(DEADLINE * 10) for w in workers]
    wait_for(lambda: len(got) == STREAMS, what="every service to finish")
    assert not local.errors
    assert all(n == SIZE for _, n, _ in results)
    assert all(n == SIZE for _, n, _ in got.values())
    # What each client sent is what some service received, and the reverse.
    assert sorted(sent for sent, _, _ in results) == sorted(h for _, _, h in got.values())
    assert sorted(h for _, _, h in results) == sorted(sent for sent, _, _ in got.values())


def test_stalled_stream_beside_a_busy_one(sockjoin, servers):
    """A client that stops reading holds back only its own stream: the
    service feeding it is stopped by backpressure (its bytes stay bounded),
    while another stream moves 16 MiB; the stalled one then gets all of its
    data intact."""
    pushed = {"n": 0}
    flood = random.Random(7).randbytes(64 << 20)

    def service(conn, index):
        if index == 1:  # the stalled stream's service: push all it can
            with contextlib.suppress(OSError):
                view = memoryview(flood)
                for off in range(0, len(view), 65536):
                    conn.sendall(view[off:off + 65536])
                    pushed["n"] = off + 65536
                conn.shutdown(socket.SHUT_WR)
            return
        with contextlib.suppress(OSError):
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    local = servers(handler=service)
    _, server = start_server(sockjoin)
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server)
    stalled = connect_tcp((host, pub), rcvbuf=65536)
    local.wait_accepts(1)
    # The flood stops once every buffer on the way is full.
    wait_for(lambda: pushed["n"] > 0, what="the flood to start")
    last = -1
    while pushed["n"] != last:
        last = pushed["n"]
        time.sleep(0.5)  # settling: the count must stop growing
    print("the stalled stream's service could push %d bytes" % pushed["n"])
    assert pushed["n"] < 16 << 20, "the stalled stream took %d bytes" % pushed["n"]
    busy = connect_tcp((host, pub))
    data = random.Random(8).randbytes(SIZE)
    w = Worker(send_all_then_shutdown, busy, data)
    w.start()
    n, h = recv_hash_until_eof(busy, timeout=DEADLINE * 4)
    w.join_result()
    assert (n, h) == (SIZE, hashlib.sha256(data).hexdigest())
    n, h = recv_hash_until_eof(stalled, timeout=DEADLINE * 4)
    assert (n, h) == (len(flood), hashlib.sha256(flood).hexdigest())


def test_reset_crosses_both_ways(sockjoin, servers):
    """A reset on either end reaches the other end as a reset, not as a
    clean end of data."""
    local = servers()  # connections are taken with accept_next()
    _, server = start_server(sockjoin)
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server)
    # The local service resets: the public client sees a reset.
    client = connect_tcp((host, pub))
    client.sendall(b"a")
    service = local.accept_next()
    assert recv_exact(service, 1) == b"a"
    rst_close(service)
    assert expect_closed(client)[0] == "reset"
    client.close()
    # The public client resets: the local service sees a reset.
    client = connect_tcp((host, pub))
    client.sendall(b"b")
    service = local.accept_next()
    assert recv_exact(service, 1) == b"b"
    rst_close(client)
    assert expect_closed(service)[0] == "reset"


# --------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------

def test_wrong_api_key(sockjoin, servers):
    local = echo_server(servers)
    srv, server = start_server(sockjoin, keys="right-key,other-key")
    agent = sockjoin("expose", local.addr, "--server", server, wait=False,
                     env=env_with(SOCKJOIN_API_KEY="wrong-key"))
    assert agent.wait_exit() == 1
    assert "sockjoin expose: unauthorized: wrong API key" in agent.stderr_text()
    assert agent.stdout_pending() == b""
    srv.wait_stderr(r"unauthorized: wrong API key")
    # The second of the server's keys works, given on the command line.
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, "--api-key", "other-key",
                                      key=None)
    roundtrip((host, pub))


def test_no_key(sockjoin, servers, tmp_path):
    local = echo_server(servers)
    srv, server = start_server(sockjoin)
    agent = sockjoin("expose", local.addr, "--server", server, wait=False, env=env_with())
    assert agent.wait_exit() == 1
    assert "sockjoin expose: unauthorized: no API key given" in agent.stderr_text()
    # A key file works (its trailing newline is not part of the key).
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, "--api-key-file",
                                      str(keyfile), key=None)
    roundtrip((host, pub))


def test_server_refuses_to_start_without_keys(tmp_path):
    r = subprocess.run([os.environ.get("SOCKJOIN_BIN") or "sockjoin", "server", "--listen",
                        "127.0.0.1:0"], env=env_with(), capture_output=True, timeout=DEADLINE)
    assert r.returncode == 1
    assert b"no API keys configured" in r.stderr
    empty = tmp_path / "keys"
    empty.write_text("# nobody yet\n\n")
    r = run_sockjoin(["server", "--listen", "127.0.0.1:0", "--api-keys-file", str(empty)])
    assert r.returncode == 1
    assert b"holds no key" in r.stderr


def test_keys_file(sockjoin, servers, tmp_path):
    local = echo_server(servers)
    keys = tmp_path / "keys"
    keys.write_text("# agents\nalpha\n  beta  \n")
    proc = sockjoin("server", "--listen", "127.0.0.1:0", "--public-bind", "127.0.0.1",
                    "--api-keys-file", str(keys), wait=False, env=env_with())
    server = proc.read_stdout_line().split()[-1]
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, key="beta")
    roundtrip((host, pub))


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------

def make_ca(d, name):
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + name], check=True, capture_output=True)
    return key, cert


def make_server_cert(d, ca_key, ca_cert):
    key, csr, cert = (os.path.join(d, "srv." + x) for x in ("key", "csr", "pem"))
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
                   check=True, capture_output=True)
    return key, cert


@pytest.fixture
def pki(tmp_path):
    d = str(tmp_path)
    ca_key, ca = make_ca(d, "ca")
    _, other_ca = make_ca(d, "other-ca")
    key, cert = make_server_cert(d, ca_key, ca)
    return {"ca": ca, "other_ca": other_ca, "key": key, "cert": cert}


def test_tls(sockjoin, servers, pki):
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "--tls-cert", pki["cert"], "--tls-key", pki["key"], "-v")
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, "--tls", "--ca", pki["ca"])
    roundtrip((host, pub), os.urandom(1 << 20))
    # The name is checked too: "localhost" is in the certificate.
    port = parse_hostport(server)[1]
    _, [(host2, pub2, _)] = start_agent(sockjoin, [local.addr], "localhost:%d" % port, "--tls",
                                        "--ca", pki["ca"])
    assert host2 == "localhost"
    roundtrip(("127.0.0.1", pub2))


def test_tls_wrong_ca(sockjoin, servers, pki):
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "--tls-cert", pki["cert"], "--tls-key", pki["key"])
    agent = sockjoin("expose", local.addr, "--server", server, "--tls", "--ca", pki["other_ca"],
                     wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    assert agent.wait_exit() == 1
    assert re.search(r"sockjoin expose: tls: .*certificate verify failed", agent.stderr_text())
    assert agent.stdout_pending() == b""
    # --insecure skips the check (for tests, as the seed's feature).
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, "--tls", "--insecure")
    roundtrip((host, pub))
    # An agent speaking plain TCP to a TLS server is not let in either.
    plain = sockjoin("expose", local.addr, "--server", server, "--handshake-timeout", "2",
                     wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    assert plain.wait_exit() == 1


# --------------------------------------------------------------------------
# The WebSocket carrier (direct; behind nginx: see the WebSocket tests)
# --------------------------------------------------------------------------

def test_websocket_transport(sockjoin, servers):
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "--transport", "ws", "--ws-path", "/tunnel")
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, "--transport", "ws",
                                      "--ws-path", "/tunnel")
    data = random.Random(5).randbytes(SIZE)
    with connect_tcp((host, pub)) as s:
        w = Worker(send_all_then_shutdown, s, data)
        w.start()
        assert recv_hash_until_eof(s) == (SIZE, hashlib.sha256(data).hexdigest())
        w.join_result()
    # Another path is not the tunnel's: the upgrade is refused, by name.
    wrong = sockjoin("expose", local.addr, "--server", server, "--transport", "ws", "--ws-path",
                     "/other", wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    assert wrong.wait_exit() == 1
    assert "sockjoin expose: ws: server refused the upgrade: HTTP 404" in wrong.stderr_text()
    # An agent that does not speak WebSocket is not let in either.
    plain = sockjoin("expose", local.addr, "--server", server, "--handshake-timeout", "3",
                     wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    assert plain.wait_exit() == 1


def test_websocket_over_tls(sockjoin, servers, pki):
    local = echo_server(servers)
    _, server = start_server(sockjoin, "--transport", "ws", "--tls-cert", pki["cert"],
                             "--tls-key", pki["key"])
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server, "--transport", "ws", "--tls",
                                      "--ca", pki["ca"])
    roundtrip((host, pub), os.urandom(1 << 20))
    # A WebSocket agent at a plain TCP server gets a clear error.
    _, tcp_server = start_server(sockjoin)
    ws = sockjoin("expose", local.addr, "--server", tcp_server, "--transport", "ws", wait=False,
                  env=env_with(SOCKJOIN_API_KEY=KEY))
    assert ws.wait_exit() == 1
    assert "sockjoin expose: ws: " in ws.stderr_text()


# --------------------------------------------------------------------------
# Losing the server or the agent
# --------------------------------------------------------------------------

def test_server_killed_and_restarted(sockjoin, killable, servers):
    local = echo_server(servers)
    srv, server = start_server(killable)
    agent, [(host, pub, tid)] = start_agent(sockjoin, [local.addr], server, "--retry-max", "0.5",
                                            "-v")
    roundtrip((host, pub))
    held = connect_tcp((host, pub))
    held.sendall(b"held")
    assert recv_exact(held, 4) == b"held"
    srv.proc.kill()
    srv.wait_exit()
    # The public connection went with the server.
    assert expect_closed(held)[0] in ("eof", "reset")
    agent.wait_stderr(r"connection to the server lost")
    # The server comes back on its port; the agent finds it and asks for
    # the same public port, which it gets.
    srv2 = sockjoin("server", "--listen", server, "--public-bind", "127.0.0.1", wait=False,
                    env=env_with(SOCKJOIN_API_KEYS=KEY))
    assert srv2.read_stdout_line() == "listening server " + server
    assert read_exposed(agent, local.addr) == (host, pub, tid)
    roundtrip((host, pub))
    assert agent.alive()


def test_agent_killed_port_reserved_then_released(sockjoin, killable, servers):
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "--grace", "2", "-v")
    agent, [(host, pub, tid)] = start_agent(killable, [local.addr], server)
    held = connect_tcp((host, pub))
    held.sendall(b"x")
    assert recv_exact(held, 1) == b"x"
    agent.proc.kill()
    agent.wait_exit()
    # The public connection is closed at once ...
    assert expect_closed(held, timeout=10)[0] in ("eof", "reset")
    srv.wait_stderr(r"tunnel %d \(port %d\): agent away; port held for 2 s" % (tid, pub))
    # ... and while the agent is away, the port refuses service promptly
    # (accepted and closed, never left waiting).
    with connect_tcp((host, pub)) as s:
        t0 = time.monotonic()
        assert expect_closed(s, timeout=10)[0] in ("eof", "reset")
        assert time.monotonic() - t0 < 5
    # After the grace period the port is released.
    srv.wait_stderr(r"tunnel %d: port %d released" % (tid, pub))
    with pytest.raises(ConnectionRefusedError):
        connect_tcp((host, pub))


def test_agent_back_within_grace_gets_its_port(sockjoin, killable, servers):
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "-v")
    agent, [(host, pub, tid)] = start_agent(killable, [local.addr], server)
    agent.proc.kill()
    agent.wait_exit()
    srv.wait_stderr(r"agent away; port held")
    # A new agent with the same key asks for the port and takes the tunnel
    # back (same port, same id).
    _, [(host2, pub2, tid2)] = start_agent(sockjoin, [local.addr], server, "--remote-port",
                                           str(pub))
    assert (pub2, tid2) == (pub, tid)
    roundtrip((host2, pub2))
    srv.wait_stderr(r"tunnel %d \(port %d\): back with agent 2" % (tid, pub))


def test_port_in_use_is_refused(sockjoin, servers):
    local = echo_server(servers)
    _, server = start_server(sockjoin)
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server)
    other = sockjoin("expose", local.addr, "--server", server, "--remote-port", str(pub),
                     wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    assert other.wait_exit() == 1
    assert ("the server refused to expose %s: port %d is already exposed" % (local.addr, pub)
            in other.stderr_text() or "port %d is in use" % pub in other.stderr_text())


def test_dead_agent_found_by_heartbeat(sockjoin, servers):
    """An agent that stops answering (SIGSTOP: its socket stays open) is
    found dead within heartbeat-timeout + heartbeat, and its port is held."""
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "--heartbeat", "0.2", "--heartbeat-timeout", "1", "-v")
    agent, [(host, pub, tid)] = start_agent(sockjoin, [local.addr], server)
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        srv.wait_stderr(r"gone: no frame from the peer", timeout=10)
        assert time.monotonic() - t0 < 6
        srv.wait_stderr(r"tunnel %d \(port %d\): agent away" % (tid, pub))
    finally:
        agent.proc.send_signal(signal.SIGCONT)


def test_dead_server_found_by_heartbeat(sockjoin, servers):
    """A server that stops answering (SIGSTOP) is found dead by the agent
    within heartbeat-timeout + heartbeat; once the server runs again the
    agent is back on the same port (taking its tunnel back, or over from
    its own old session if the server sees the new one first)."""
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "-v")
    agent, [(host, pub, tid)] = start_agent(sockjoin, [local.addr], server, "--heartbeat", "0.2",
                                            "--heartbeat-timeout", "1", "--retry-max", "0.5")
    srv.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        agent.wait_stderr(r"connection to the server lost: no frame from the peer", timeout=10)
        assert time.monotonic() - t0 < 6
    finally:
        srv.proc.send_signal(signal.SIGCONT)
    assert read_exposed(agent, local.addr) == (host, pub, tid)
    roundtrip((host, pub))


class FreezingProxy:
    """A TCP proxy to target whose connections can be frozen: bytes stop
    flowing both ways but nothing is closed, as when a network path dies
    without a word. Connections made after a freeze flow normally."""

    def __init__(self, target):
        self.target = parse_hostport(target)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.live = []  # [client, upstream, frozen-event]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            conn = [c, u, threading.Event()]
            self.live.append(conn)
            threading.Thread(target=self._pump, args=(conn,), daemon=True).start()

    def _pump(self, conn):
        c, u, frozen = conn
        peer = {c: u, u: c}
        with contextlib.suppress(OSError, ValueError):  # ValueError: closed at teardown
            while not frozen.is_set():
                r, _, _ = select.select([c, u], [], [], 0.1)
                for s in r:
                    if frozen.is_set():
                        break
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)

    def freeze(self):
        for conn in self.live:
            conn[2].set()

    def close(self):
        self.closed = True
        self.sock.close()
        for c, u, _ in self.live:
            c.close()
            u.close()


def test_agent_takes_its_tunnel_over_after_a_silent_network_loss(sockjoin, servers):
    """The path to the server dies silently: the agent finds out first (its
    heartbeat is shorter), reconnects, and takes its own tunnel over from
    the session the server still thinks alive; same port, same id."""
    local = echo_server(servers)
    srv, server = start_server(sockjoin, "-v", "--heartbeat-timeout", "60")
    proxy = FreezingProxy(server)
    try:
        agent, [(host, pub, tid)] = start_agent(sockjoin, [local.addr], proxy.addr, "--heartbeat",
                                                "0.2", "--heartbeat-timeout", "1",
                                                "--retry-max", "0.5")
        roundtrip((host, pub))
        proxy.freeze()
        agent.wait_stderr(r"connection to the server lost: no frame from the peer")
        assert read_exposed(agent, local.addr) == (host, pub, tid)
        srv.wait_stderr(r"tunnel %d \(port %d\): taken over by agent 2" % (tid, pub))
        roundtrip((host, pub))
    finally:
        proxy.close()


def test_local_service_down(sockjoin):
    port = free_port()
    srv, server = start_server(sockjoin)
    agent, [(host, pub, tid)] = start_agent(sockjoin, ["127.0.0.1:%d" % port], server)
    with connect_tcp((host, pub)) as s:
        t0 = time.monotonic()
        assert expect_closed(s, timeout=10)[0] in ("eof", "reset")
        assert time.monotonic() - t0 < 5
    agent.wait_stderr(r"127\.0\.0\.1:%d: cannot connect to the local service for a public "
                      r"connection \(tunnel %d\): connection refused" % (port, tid))
    srv.wait_stderr(r"tunnel %d \(port %d\): the agent could not connect to its local service"
                    % (tid, pub))
    assert agent.alive()


def test_tunnel_limit_and_range(sockjoin, servers):
    local = echo_server(servers)
    lo = free_port()
    _, server = start_server(sockjoin, "--max-tunnels", "2", "--port-range", "%d-%d" % (lo, lo))
    _, [(host, pub, _)] = start_agent(sockjoin, [local.addr], server)
    assert pub == lo
    # The range is used up.
    full = sockjoin("expose", local.addr, "--server", server, wait=False,
                    env=env_with(SOCKJOIN_API_KEY=KEY))
    assert full.wait_exit() == 1
    assert "no free port in %d-%d" % (lo, lo) in full.stderr_text()
    # A port outside the range is refused by name.
    out = sockjoin("expose", local.addr, "--server", server, "--remote-port", str(lo - 1),
                   wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    assert out.wait_exit() == 1
    assert "outside the server's range" in out.stderr_text()


# --------------------------------------------------------------------------
# The command lines
# --------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["server", "--port-range", "10-5"], "bad --port-range '10-5': expected LO-HI"),
    (["server", "--max-tunnels", "0"], "bad --max-tunnels '0': expected a whole number"),
    (["server", "--grace", "soon"], "bad --grace 'soon': expected seconds > 0"),
    (["server", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
    (["server", "--listen", "1.2.3.4:99999"], "bad --listen '1.2.3.4:99999'"),
    (["server", "--bogus"], "unknown option '--bogus'"),
    (["expose", "127.0.0.1:80"], "--server HOST[:PORT] is required"),
    (["expose", "--server", "h:1"], "expected a LOCAL_HOST:PORT to expose"),
    (["expose", "127.0.0.1:0", "--server", "h:1"], "bad local service '127.0.0.1:0'"),
    (["expose", "80", "--server", "h:1", "--remote-port", "70000"],
     "bad --remote-port '70000': expected a port from 0 to 65535"),
    (["expose", "80", "--server", "h:1", "--remote-port", "1", "--remote-port", "2"],
     "2 --remote-port options for 1 local services"),
    (["expose", "80", "--server", "h:1", "--ca", "x.pem"], "--ca needs --tls"),
    (["expose", "80", "--server", "h:1", "--tls", "--ca", "x", "--insecure"],
     "--ca and --insecure contradict each other"),
    (["expose", "80", "--server", "h:1", "--transport", "udp"],
     "bad --transport 'udp': expected tcp or ws"),
    (["expose", "80", "--server", "h:1", "--ws-path", "/t"], "--ws-path needs --transport ws"),
    (["expose", "80", "--server", "h:1", "--transport", "ws", "--ws-path", "t"],
     "bad --ws-path 't': expected a path starting with /"),
    (["server", "--transport", "ws", "--ws-path", "/a b"], "bad --ws-path '/a b'"),
    (["expose", "80", "--server", "h:1", "--retry-min", "5", "--retry-max", "1"],
     "--retry-min must not be longer than --retry-max"),
    (["expose", "80", "--server", "h:1", "--heartbeat", "5", "--heartbeat-timeout", "5"],
     "--heartbeat-timeout must be longer than --heartbeat"),
])
def test_usage_errors(args, message):
    r = run_sockjoin(args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.decode(), r.stderr
    assert r.stderr.decode().startswith("sockjoin %s: " % args[0])


def test_help():
    for cmd in ("server", "expose"):
        r = run_sockjoin([cmd, "--help"])
        assert r.returncode == 0
        assert r.stdout.decode().startswith("usage: sockjoin %s" % cmd)
