"""tls and encrypt=psk: sides against real peers.

TLS both ways with openssl s_client and s_server (and Python's ssl module
where a test moves many bytes), mutual TLS, and each way a TLS peer is
refused (wrong CA, wrong name, no or untrusted client certificate, a
plaintext peer on either side); encrypt= between two sockjoin instances
with a recording (and tampering) middleman between them: plaintext at the
ends, ciphertext in the middle, a wrong key or a flipped byte refused and
the pair reset. Certificates are made at test time with the openssl CLI.
After refusals the connector keeps serving, and its descriptors return to
their baseline.
"""

import contextlib
import hashlib
import os
import re
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (DEADLINE, connect_tcp, echo_handler, expect_closed, fmt_hostport, recv_exact,
                      wait_for)

LOCAL = "listen:127.0.0.1:0"


# --------------------------------------------------------------------------
# certificates
# --------------------------------------------------------------------------

def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=DEADLINE)


def make_ca(d, name):
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".pem", "-subj", "/CN=" + name, "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_leaf(d, name, ca, cn, san):
    openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % san)
    openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_leaf(d, "server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_leaf(d, "client", "ca", "client", "DNS:client")
    make_leaf(d, "stranger", "other-ca", "client", "DNS:client")
    return {n: os.path.join(d, n) for n in ("ca", "other-ca", "server", "client", "stranger")}


def tls_listen(pki, extra=""):
    return "%s,tls,cert=%s.pem,key=%s.key%s" % (LOCAL, pki["server"], pki["server"], extra)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def refused(reason):
    return r"refused: %s$" % re.escape(reason)


# --------------------------------------------------------------------------
# openssl s_client and s_server
# --------------------------------------------------------------------------

class OpenSSLTool:
    """openssl s_client or s_server with stdin and stdout as pipes."""

    def __init__(self, args):
        self.proc = subprocess.Popen(["openssl"] + args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = b""

    def read_until(self, pattern, timeout=DEADLINE):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while not rx.search(self.out):
            left = deadline - time.monotonic()
            assert left > 0, "openssl printed no %r: %r" % (pattern, self.out[-2000:])
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, "openssl ended without %r: %r" % (pattern, self.out[-2000:])
                self.out += chunk
        return rx.search(self.out)

    def read_rest(self, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "openssl did not end: %r" % self.out[-2000:]
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return self.out
                self.out += chunk

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        self.proc.stdout.close()


@pytest.fixture
def openssl_tool():
    made = []

    def start(*args):
        t = OpenSSLTool([str(a) for a in args])
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


def s_client(openssl_tool, addr, ca, *extra):
    # -no_ign_eof: end of our input ends the session with close_notify.
    return openssl_tool("s_client", "-connect", addr, "-CAfile", ca + ".pem",
                        "-servername", "localhost", "-verify_return_error", "-quiet",
                        "-no_ign_eof", *extra)


def s_server(openssl_tool, pki, *extra, host="127.0.0.1"):
    t = openssl_tool("s_server", "-accept", host + ":0", "-cert", pki["server"] + ".pem",
                     "-key", pki["server"] + ".key", "-rev", *extra)
    port = int(t.read_until(rb"ACCEPT [0-9.]+:(\d+)").group(1))
    return t, "%s:%d" % (host, port)


def echo_through_s_client(openssl_tool, addr, ca, *extra):
    c = s_client(openssl_tool, addr, ca, *extra)
    c.send(b"hello through tls\n")
    c.read_until(rb"hello through tls\n")
    c.proc.stdin.close()  # close_notify, then the end
    c.read_rest()
    return c


# --------------------------------------------------------------------------
# tls on a listening side: sockjoin terminates TLS
# --------------------------------------------------------------------------

def test_listen_tls_with_s_client(sockjoin, servers, pki, openssl_tool):
    echo = servers(handler=echo_handler)
    sj = sockjoin("-v", tls_listen(pki), "connect:" + echo.addr)
    echo_through_s_client(openssl_tool, sj.listening["A"], pki["ca"])
    # close_notify both ways: a clean end, no error.
    m = sj.wait_stderr(r"pair 1 closed: .*")
    assert m[0].group(0).endswith("bytes"), m[0].group(0)


def test_listen_tls_16mib_each_way(sockjoin, servers, pki):
    """16 MiB each way at once (the backend reads and sends on two threads;
    an SSL socket is used by one thread only)."""
    up, down = os.urandom(16 << 20), os.urandom(16 << 20)
    got_up = []

    def backend(conn, index):
        t = threading.Thread(target=conn.sendall, args=(down,))
        t.start()
        got_up.append(recv_exact(conn, len(up), timeout=DEADLINE * 2))
        t.join(DEADLINE)

    back = servers(handler=backend)
    sj = sockjoin("-v", tls_listen(pki), "connect:" + back.addr)
    ctx = ssl.create_default_context(cafile=pki["ca"] + ".pem")
    with ctx.wrap_socket(connect_tcp(sj.listening["A"]), server_hostname="localhost") as s:
        s.sendall(up)
        got = bytearray()
        while len(got) < len(down):
            chunk = s.recv(1 << 16)
            assert chunk, "end after %d bytes" % len(got)
            got += chunk
    assert hashlib.sha256(got).digest() == hashlib.sha256(down).digest()
    wait_for(lambda: got_up, what="the backend to get everything")
    assert hashlib.sha256(got_up[0]).digest() == hashlib.sha256(up).digest()


def test_mutual_tls(sockjoin, servers, pki, openssl_tool):
    echo = servers(handler=echo_handler)
    sj = sockjoin("-v", tls_listen(pki, ",ca=%s.pem" % pki["ca"]), "connect:" + echo.addr)
    echo_through_s_client(openssl_tool, sj.listening["A"], pki["ca"],
                          "-cert", pki["client"] + ".pem", "-key", pki["client"] + ".key")
    sj.wait_stderr(r"pair 1 formed")


def test_mutual_tls_without_client_certificate(sockjoin, servers, pki, openssl_tool):
    echo = servers(handler=echo_handler)
    sj = sockjoin("-v", tls_listen(pki, ",ca=%s.pem" % pki["ca"]), "connect:" + echo.addr)
    c = s_client(openssl_tool, sj.listening["A"], pki["ca"])
    c.send(b"let me in\n")
    out = c.read_rest()
    # The session fails: the alert "certificate required", or a reset that
    # overtakes it.
    assert b"let me in" not in out
    assert b"certificate required" in out or b"errno=104" in out, out
    sj.wait_stderr(refused("tls: peer sent no client certificate"))
    assert not sj.stderr_matches(r"pair \d+ formed")
    assert echo.accepts == 0  # a refused peer never reaches the other side


def test_mutual_tls_untrusted_client_certificate(sockjoin, servers, pki, openssl_tool):
    echo = servers(handler=echo_handler)
    sj = sockjoin("-v", tls_listen(pki, ",ca=%s.pem" % pki["ca"]), "connect:" + echo.addr)
    c = s_client(openssl_tool, sj.listening["A"], pki["ca"],
                 "-cert", pki["stranger"] + ".pem", "-key", pki["stranger"] + ".key")
    c.send(b"let me in\n")
    c.read_rest()
    sj.wait_stderr(refused("tls: certificate verify failed: unable to get local issuer certificate"))
    assert not sj.stderr_matches(r"pair \d+ formed")


def test_plaintext_client_refused_and_others_served(sockjoin, servers, pki, openssl_tool):
    echo = servers(handler=echo_handler)
    sj = sockjoin("-v", tls_listen(pki), "connect:" + echo.addr)
    baseline = open_fds(sj.pid)
    plain = []
    for _ in range(5):
        s = connect_tcp(sj.listening["A"])
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        plain.append(s)
    for s in plain:
        expect_closed(s)
        s.close()
    sj.wait_stderr(refused("tls: peer did not speak TLS (plaintext?)"), count=5)
    echo_through_s_client(openssl_tool, sj.listening["A"], pki["ca"])
    sj.wait_stderr(r"pair 1 closed")
    wait_for(lambda: open_fds(sj.pid) == baseline,
             what="descriptors back to %d (now %d)" % (baseline, open_fds(sj.pid)))


def test_client_leaving_without_close_notify_resets_the_pair(sockjoin, servers, pki):
    got = []

    def handler(conn, index):
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError as e:  # the reset
                got.append(e)
                return
            if not chunk:
                got.append(b"")
                return

    back = servers(handler=handler)
    sj = sockjoin("-v", tls_listen(pki), "connect:" + back.addr)
    ctx = ssl.create_default_context(cafile=pki["ca"] + ".pem")
    s = ctx.wrap_socket(connect_tcp(sj.listening["A"]), server_hostname="localhost")
    s.sendall(b"x" * 1000)
    sj.wait_stderr(r"pair 1 formed")
    # A FIN with no close_notify, as from a client that was killed.
    socket.socket(fileno=os.dup(s.fileno())).shutdown(socket.SHUT_RDWR)
    s.close()
    sj.wait_stderr(r"tls: peer closed without close_notify \(truncated\)$")
    sj.wait_stderr(r"pair 1 closed: .*: protocol error$")
    wait_for(lambda: got, what="the backend to see the end")
    assert isinstance(got[0], ConnectionResetError), got


# --------------------------------------------------------------------------
# tls on a connecting side: sockjoin originates TLS
# --------------------------------------------------------------------------

def test_connect_tls_to_s_server(sockjoin, pki, openssl_tool):
    srv, addr = s_server(openssl_tool, pki)
    sj = sockjoin("-v", LOCAL, "connect:%s,tls,ca=%s.pem,sni=localhost" % (addr, pki["ca"]))
    s = connect_tcp(sj.listening["A"])
    s.sendall(b"abcdef\n")
    assert recv_exact(s, 7) == b"fedcba\n"
    s.close()


def test_connect_tls_checks_the_dialled_name(sockjoin, pki, openssl_tool):
    srv, addr = s_server(openssl_tool, pki)
    port = addr.rsplit(":", 1)[1]
    sj = sockjoin("-v", LOCAL, "connect:localhost:%s,tls,ca=%s.pem" % (port, pki["ca"]))
    s = connect_tcp(sj.listening["A"])
    s.sendall(b"xyz\n")
    assert recv_exact(s, 4) == b"zyx\n"


@pytest.mark.parametrize("options,reason", [
    (",tls,ca={other-ca}.pem,sni=localhost",
     "tls: certificate verify failed: unable to get local issuer certificate"),
    (",tls,sni=localhost",  # the system store does not know our CA
     "tls: certificate verify failed: unable to get local issuer certificate"),
    (",tls,ca={ca}.pem,sni=wrong.example", "tls: certificate verify failed: hostname mismatch"),
    (",tls,ca={ca}.pem", "tls: certificate verify failed: IP address mismatch"),
], ids=["wrong-ca", "system-store", "wrong-name", "wrong-ip"])
def test_connect_tls_refuses_server(sockjoin, pki, openssl_tool, options, reason):
    # The certificate names 127.0.0.1; for the wrong address, dial 127.0.0.2.
    host = "127.0.0.2" if "IP address" in reason else "127.0.0.1"
    srv, addr = s_server(openssl_tool, pki, host=host)
    sj = sockjoin("-v", LOCAL, "connect:%s%s" % (addr, options.format(**pki)))
    s = connect_tcp(sj.listening["A"])
    s.sendall(b"secret\n")
    kind, data = expect_closed(s)
    assert data == b"", data
    sj.wait_stderr(re.escape(reason) + "$")
    assert b"secret" not in srv.out


def test_connect_tls_verify_0(sockjoin, pki, openssl_tool):
    srv, addr = s_server(openssl_tool, pki)
    sj = sockjoin("-v", LOCAL, "connect:%s,tls,verify=0,sni=wrong.example" % addr)
    s = connect_tcp(sj.listening["A"])
    s.sendall(b"ok\n")
    assert recv_exact(s, 3) == b"ko\n"


def test_connect_tls_with_client_certificate(sockjoin, pki, openssl_tool):
    srv, addr = s_server(openssl_tool, pki, "-Verify", "1", "-CAfile", pki["ca"] + ".pem",
                         "-verify_return_error")
    sj = sockjoin("-v", LOCAL, "connect:%s,tls,ca=%s.pem,sni=localhost,cert=%s.pem,key=%s.key"
                  % (addr, pki["ca"], pki["client"], pki["client"]))
    s = connect_tcp(sj.listening["A"])
    s.sendall(b"mtls\n")
    assert recv_exact(s, 5) == b"sltm\n"


def test_connect_tls_to_plaintext_server(sockjoin, servers):
    def banner(conn, index):
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        with contextlib.suppress(OSError):
            conn.recv(65536)

    srv = servers(handler=banner)
    sj = sockjoin("-v", LOCAL, "connect:%s,tls,verify=0" % srv.addr)
    s = connect_tcp(sj.listening["A"])
    kind, data = expect_closed(s)
    assert data == b""
    sj.wait_stderr(re.escape("tls: peer did not speak TLS (plaintext?)") + "$")


def test_bad_tls_files_are_named(tmp_path):
    from conftest import run_sockjoin
    missing = str(tmp_path / "nope.pem")
    r = run_sockjoin(["listen:127.0.0.1:0,tls,cert=%s,key=%s" % (missing, missing),
                      "connect:127.0.0.1:9"])
    assert r.returncode != 0
    assert ("tls: cannot read cert file %s: No such file or directory" % missing).encode() in r.stderr


# --------------------------------------------------------------------------
# encrypt=psk: between two sockjoin instances
# --------------------------------------------------------------------------

class Middleman:
    """Forwards one connection to target both ways, recording what passes;
    can flip the byte at offset flip of the client-to-server direction."""

    def __init__(self, target, flip=None):
        self.target, self.flip = target, flip
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.addr = fmt_hostport("127.0.0.1", self.sock.getsockname()[1])
        self.seen = [bytearray(), bytearray()]
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        with contextlib.suppress(OSError):
            a, _ = self.sock.accept()
            b = socket.create_connection(self.target)
            self.conns += [a, b]
            threading.Thread(target=self._pump, args=(b, a, 1), daemon=True).start()
            self._pump(a, b, 0)

    def _pump(self, src, dst, d):
        try:
            while True:
                chunk = bytearray(src.recv(65536))
                if not chunk:
                    dst.shutdown(socket.SHUT_WR)
                    return
                at = len(self.seen[d])
                if d == 0 and self.flip is not None and at <= self.flip < at + len(chunk):
                    chunk[self.flip - at] ^= 0x01
                self.seen[d] += chunk
                dst.sendall(chunk)
        except OSError:
            # A reset on one side is passed on as the end of both.
            for c in (src, dst):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


@pytest.fixture
def middleman():
    made = []

    def make(target, flip=None):
        m = Middleman(target, flip)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def psk(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def encrypted_pair(sockjoin, servers, middleman, tmp_path, key_a, key_b, flip=None, handler=None):
    """client -> [end A] ==encrypt=> middleman ==> [end B] -> backend."""
    back = servers(handler=handler or echo_handler)
    far = sockjoin("-v", "%s,encrypt=psk:%s" % (LOCAL, key_b), "connect:" + back.addr)
    mid = middleman(far.addr("A"), flip)
    near = sockjoin("-v", LOCAL, "connect:%s,encrypt=psk:%s" % (mid.addr, key_a))
    return near, mid, far, back


def test_encrypt_plaintext_at_the_ends_ciphertext_between(sockjoin, servers, middleman, tmp_path):
    key = psk(tmp_path, "k", b"a passphrase both ends know\n")
    near, mid, far, back = encrypted_pair(sockjoin, servers, middleman, tmp_path, key, key)
    marker = b"PLAINTEXT-MARKER-" * 1000
    data = marker + os.urandom(4 << 20) + marker
    s = connect_tcp(near.listening["A"])
    t = threading.Thread(target=s.sendall, args=(data,))
    t.start()
    got = recv_exact(s, len(data), timeout=DEADLINE * 2)
    t.join(DEADLINE)
    assert got == data
    s.shutdown(socket.SHUT_WR)
    assert expect_closed(s)[1] == b""
    for d in (0, 1):
        assert len(mid.seen[d]) > len(data)  # framing and tags on top
        assert b"PLAINTEXT-MARKER" not in mid.seen[d]
    near.wait_stderr(r"pair 1 closed: A->B %d bytes, B->A %d bytes$" % (len(data), len(data)))


def test_encrypt_wrong_key_is_refused(sockjoin, servers, middleman, tmp_path):
    ka = psk(tmp_path, "ka", b"one key\n")
    kb = psk(tmp_path, "kb", b"another key\n")
    near, mid, far, back = encrypted_pair(sockjoin, servers, middleman, tmp_path, ka, kb)
    s = connect_tcp(near.listening["A"])
    s.sendall(b"for your eyes only\n")
    assert expect_closed(s)[1] == b""
    # Both ends refuse; whichever checks the other's key confirmation first
    # names the wrong key, and the other may just see it leave.
    reason = "encrypt: peer has a different key or is not sockjoin"
    either = "(%s|%s)$" % (re.escape(reason), re.escape(
        "encrypt: peer closed the connection during the handshake"))
    near.wait_stderr(r"refused: " + either)
    far.wait_stderr(r"refused: " + either)
    assert near.stderr_matches(re.escape(reason)) or far.stderr_matches(re.escape(reason))
    assert not far.stderr_matches(r"pair \d+ formed")
    assert back.accepts == 0
    assert b"for your eyes only" not in mid.seen[0]


def test_encrypt_flipped_byte_resets_the_pair(sockjoin, servers, middleman, tmp_path):
    key = psk(tmp_path, "k", os.urandom(32))
    got = []

    def sink(conn, index):
        with contextlib.suppress(OSError):
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got.append(chunk)

    near, mid, far, back = encrypted_pair(sockjoin, servers, middleman, tmp_path, key, key,
                                          flip=200000, handler=sink)
    data = os.urandom(1 << 20)
    s = connect_tcp(near.listening["A"])
    with contextlib.suppress(OSError):
        s.sendall(data)
    far.wait_stderr(re.escape(
        "encrypt: message failed authentication (tampered or corrupted stream)") + "$")
    # Reset, whether or not its backend was dialled yet.
    far.wait_stderr(r"(pair 1 closed: .*|closed before pairing): protocol error$")
    received = b"".join(got)
    assert len(received) < 200000
    assert data.startswith(received)  # nothing altered was passed on


def test_encrypt_plaintext_peer_is_refused(sockjoin, servers, tmp_path):
    key = psk(tmp_path, "k", b"k\n")
    back = servers(handler=echo_handler)
    far = sockjoin("-v", "%s,encrypt=psk:%s" % (LOCAL, key), "connect:" + back.addr)
    baseline = open_fds(far.pid)
    s = connect_tcp(far.listening["A"])
    s.sendall(b"hello, anyone?\n")
    kind, data = expect_closed(s)
    assert b"hello" not in data
    far.wait_stderr(refused("encrypt: peer is not sockjoin encrypt= (bad hello)"))
    s.close()
    wait_for(lambda: open_fds(far.pid) == baseline,
             what="descriptors back to %d (now %d)" % (baseline, open_fds(far.pid)))


def test_encrypt_inside_tls(sockjoin, servers, pki, tmp_path):
    """Both layers on one side: TLS outside, encryption inside."""
    key = psk(tmp_path, "k", b"inner\n")
    back = servers(handler=echo_handler)
    far = sockjoin("-v", tls_listen(pki, ",encrypt=psk:" + key), "connect:" + back.addr)
    near = sockjoin("-v", LOCAL, "connect:%s,tls,ca=%s.pem,sni=localhost,encrypt=psk:%s"
                    % (far.listening["A"], pki["ca"], key))
    s = connect_tcp(near.listening["A"])
    data = os.urandom(1 << 20)
    t = threading.Thread(target=s.sendall, args=(data,))
    t.start()
    assert recv_exact(s, len(data)) == data
    t.join(DEADLINE)
