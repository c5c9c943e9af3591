"""TLS and encrypt= on sides, against real peers: openssl s_client and
s_server, certificates made at test time (a CA, a server and a client
certificate, and a second CA that nobody trusts), and a tampering
man-in-the-middle for the end-to-end encryption."""

import os
import re
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import (DEADLINE, Server, connect_tcp, echo_handler, expect_closed, recv_exact,
                      recv_until_eof, run_sockjoin, wait_for)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pki:
    """A CA with a server certificate (localhost, 127.0.0.1) and a client
    certificate, plus a rogue CA with a server certificate of its own."""

    def __init__(self, d):
        self.d = d
        self.ca, self.ca_key = self.self_signed("ca", "/CN=sockjoin test CA")
        self.server, self.server_key = self.signed("server", "/CN=localhost",
                                                   "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self.client, self.client_key = self.signed("client", "/CN=client", None)
        self.rogue_ca, self.rogue_ca_key = self.self_signed("rogue-ca", "/CN=rogue CA")
        self.rogue, self.rogue_key = self.signed("rogue", "/CN=localhost",
                                                 "subjectAltName=DNS:localhost,IP:127.0.0.1",
                                                 ca=(self.rogue_ca, self.rogue_ca_key))

    def path(self, name):
        return os.path.join(self.d, name)

    def key(self, name):
        k = self.path(name + ".key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k)
        return k

    def self_signed(self, name, subject):
        k = self.key(name)
        c = self.path(name + ".pem")
        openssl("req", "-x509", "-new", "-key", k, "-out", c, "-days", "2", "-subj", subject)
        return c, k

    def signed(self, name, subject, san, ca=None):
        ca_cert, ca_key = ca or (self.ca, self.ca_key)
        k = self.key(name)
        csr, c, ext = self.path(name + ".csr"), self.path(name + ".pem"), self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write((san + "\n") if san else "basicConstraints=CA:FALSE\n")
        openssl("req", "-new", "-key", k, "-out", csr, "-subj", subject)
        openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                "-out", c, "-days", "2", "-extfile", ext)
        return c, k


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def echo(servers):
    return servers(handler=echo_handler)


def ended(sock):
    """The peer closed or reset the connection (a TLS side that gives up on
    a handshake resets)."""
    try:
        recv_until_eof(sock)
    except ConnectionResetError:
        pass


def tls_listen(pki, extra=""):
    return "listen:127.0.0.1:0,tls,cert=%s,key=%s%s" % (pki.server, pki.server_key, extra)


def s_client(addr, pki, *extra, data=b"hello over tls\n"):
    """openssl s_client sends data and returns what comes back: the echo, or
    less if the connection ends first (s_client exits when it does)."""
    host, port = addr
    p = subprocess.Popen(["openssl", "s_client", "-quiet", "-connect", "%s:%d" % (host, port),
                          "-CAfile", pki.ca, "-verify_return_error", "-servername", "localhost",
                          *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        p.stdin.write(data)
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + DEADLINE
        while len(got) < len(data) and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.1)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                got += chunk
        return got
    finally:
        p.kill()
        p.wait()


class SServer:
    """openssl s_server on a port of its own choosing (-accept 0)."""

    def __init__(self, pki, *extra, cert=None, key=None):
        self.p = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert or pki.server,
             "-key", key or pki.server_key, "-rev", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for line in self.p.stdout:
            m = re.match(rb"ACCEPT 127\.0\.0\.1:(\d+)", line)
            if m:
                self.addr = "127.0.0.1:%d" % int(m.group(1))
                break
        # Keep its output flowing so it never blocks on a full pipe.
        threading.Thread(target=self.p.stdout.read, daemon=True).start()

    def close(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def s_server(pki):
    made = []

    def make(*extra, **kw):
        s = SServer(pki, *extra, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def roundtrip_reversed(sj):
    """Through sockjoin to s_server -rev, which answers each line reversed."""
    c = connect_tcp(sj.addr("A"))
    c.sendall(b"abcdef\n")
    assert recv_exact(c, 7) == b"fedcba\n"
    c.close()


# ---- terminating TLS (listen side) -------------------------------------------

def test_terminates_tls_for_s_client(sockjoin, pki, echo):
    sj = sockjoin("-v", tls_listen(pki), "connect:" + echo.addr)
    assert s_client(sj.addr("A"), pki) == b"hello over tls\n"


def test_plaintext_peer_on_tls_side_is_refused(sockjoin, pki, echo):
    sj = sockjoin("-v", tls_listen(pki), "connect:" + echo.addr)
    c = connect_tcp(sj.addr("A"))
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    ended(c)
    sj.wait_stderr(r"A 127\.0\.0\.1:\d+ refused: tls: peer did not speak TLS \(plaintext\?\)")
    assert echo.accepts == 0


def test_mutual_tls_requires_a_client_certificate(sockjoin, pki, echo):
    sj = sockjoin("-v", tls_listen(pki, ",ca=" + pki.ca), "connect:" + echo.addr)
    assert s_client(sj.addr("A"), pki) == b""
    sj.wait_stderr(r"A 127\.0\.0\.1:\d+ refused: tls: peer sent no client certificate")
    assert s_client(sj.addr("A"), pki, "-cert", pki.client, "-key", pki.client_key) == \
        b"hello over tls\n"
    # A client certificate from a CA the side does not trust is refused.
    assert s_client(sj.addr("A"), pki, "-cert", pki.rogue, "-key", pki.rogue_key) == b""
    sj.wait_stderr(r"A 127\.0\.0\.1:\d+ refused: tls: certificate verify failed", count=1)
    assert echo.accepts == 1


# ---- originating TLS (connect side) ------------------------------------------

def test_originates_tls_to_s_server(sockjoin, pki, s_server):
    srv = s_server()
    sj = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,tls,ca=%s,sni=localhost" % (srv.addr, pki.ca))
    roundtrip_reversed(sj)


def test_originating_checks_an_ip_address_without_sni(sockjoin, pki, s_server):
    srv = s_server()
    sj = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,tls,ca=%s" % (srv.addr, pki.ca))
    roundtrip_reversed(sj)


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-name"])
def test_originating_refuses_a_server_it_cannot_verify(sockjoin, pki, s_server, case):
    if case == "wrong-ca":
        srv = s_server(cert=pki.rogue, key=pki.rogue_key)
        side = "connect:%s,tls,ca=%s,sni=localhost" % (srv.addr, pki.ca)
        why = r"certificate verify failed: (self-signed certificate in certificate chain|unable to get local issuer certificate)"
    else:
        srv = s_server()
        side = "connect:%s,tls,ca=%s,sni=other.example" % (srv.addr, pki.ca)
        why = r"certificate verify failed: hostname mismatch"
    sj = sockjoin("-v", "listen:127.0.0.1:0", side)
    c = connect_tcp(sj.addr("A"))
    c.sendall(b"secret\n")
    expect_closed(c)
    sj.wait_stderr(r"B 127\.0\.0\.1:\d+ refused: tls: " + why)


def test_verify_0_accepts_any_server(sockjoin, pki, s_server):
    srv = s_server(cert=pki.rogue, key=pki.rogue_key)
    sj = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,tls,verify=0" % srv.addr)
    roundtrip_reversed(sj)


def test_two_sockjoins_with_mutual_tls(sockjoin, pki, echo):
    inner = sockjoin("-v", tls_listen(pki, ",ca=" + pki.ca), "connect:" + echo.addr)
    outer = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,tls,ca=%s,cert=%s,key=%s" % (
        inner.listening["A"], pki.ca, pki.client, pki.client_key))
    c = connect_tcp(outer.addr("A"))
    data = os.urandom(1 << 20)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    assert recv_until_eof(c) == data


def test_bad_certificate_files_stop_the_start(pki, tmp_path):
    r = run_sockjoin(["listen:127.0.0.1:0,tls,cert=%s,key=%s" % (tmp_path / "none.pem", pki.server_key),
                      "connect:127.0.0.1:1"])
    assert r.returncode == 1
    assert re.search(r"A tls: cannot read cert file .*none\.pem: No such file or directory",
                     r.stderr.decode())
    r = run_sockjoin(["listen:127.0.0.1:0,tls,cert=%s,key=%s" % (pki.server, pki.client_key),
                      "connect:127.0.0.1:1"])
    assert r.returncode == 1
    assert "does not match" in r.stderr.decode()


def test_refused_tls_peers_leave_no_descriptors(sockjoin, pki, echo):
    sj = sockjoin("-v", tls_listen(pki), "connect:" + echo.addr)
    s_client(sj.addr("A"), pki)  # one good session first: lazily made things exist
    before = len(os.listdir("/proc/%d/fd" % sj.pid))
    for _ in range(30):
        c = connect_tcp(sj.addr("A"))
        c.sendall(b"not tls at all\n")
        ended(c)
        c.close()
    sj.wait_stderr(r"refused: tls: peer did not speak TLS", count=30)
    wait_for(lambda: len(os.listdir("/proc/%d/fd" % sj.pid)) == before, what="descriptors back")


# ---- encrypt=psk -------------------------------------------------------------

def psk_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    return str(p)


class Tamperer:
    """A man in the middle that forwards both ways and, after `after` bytes
    from the client side, flips one bit of the next byte."""

    def __init__(self, target, after):
        self.target = target
        self.after = after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            a, _ = self.sock.accept()
        except OSError:
            return
        host, port = self.target.rsplit(":", 1)
        b = socket.create_connection((host, int(port)))
        threading.Thread(target=self._pipe, args=(b, a, None), daemon=True).start()
        self._pipe(a, b, self.after)

    @staticmethod
    def _pipe(src, dst, after):
        seen = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if after is not None and seen <= after < seen + len(data):
                    i = after - seen
                    data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
                seen += len(data)
                dst.sendall(data)
        except OSError:
            return


def test_encrypt_end_to_end_through_a_plain_relay(sockjoin, echo, tmp_path):
    key = psk_file(tmp_path, "psk", "correct horse battery staple")
    back = sockjoin("-v", "listen:127.0.0.1:0,encrypt=psk:" + key, "connect:" + echo.addr)
    # A plain relay between the two ends sees only ciphertext.
    relay = sockjoin("-v", "--log-traffic=hex", "listen:127.0.0.1:0",
                     "connect:" + back.listening["A"])
    front = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,encrypt=psk:%s" % (relay.listening["A"], key))
    c = connect_tcp(front.addr("A"))
    marker = b"THE PLAINTEXT MARKER " * 100
    c.sendall(marker)
    c.shutdown(socket.SHUT_WR)
    assert recv_until_eof(c) == marker
    relay.wait_stderr(r"pair 1 closed")
    assert "THE PLAINTEXT" not in relay.stderr_text()


def test_encrypt_with_a_different_key_is_refused(sockjoin, echo, tmp_path):
    back = sockjoin("-v", "listen:127.0.0.1:0,encrypt=psk:" + psk_file(tmp_path, "k1", "one key"),
                    "connect:" + echo.addr)
    front = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,encrypt=psk:%s" % (
        back.listening["A"], psk_file(tmp_path, "k2", "another key")))
    c = connect_tcp(front.addr("A"))
    c.sendall(b"hello\n")
    expect_closed(c)
    # The side that finds the mismatch first says so; the other sees it go.
    pattern = r"refused: encrypt: peer has a different key or is not sockjoin"
    wait_for(lambda: front.stderr_matches(pattern) or back.stderr_matches(pattern),
             what="the key mismatch logged")
    assert echo.accepts == 0


def test_encrypt_tampered_byte_resets_and_passes_nothing_wrong_on(sockjoin, echo, tmp_path):
    key = psk_file(tmp_path, "psk", "tamper test key")
    back = sockjoin("-v", "listen:127.0.0.1:0,encrypt=psk:" + key, "connect:" + echo.addr)
    mitm = Tamperer(back.listening["A"], after=200000)
    front = sockjoin("-v", "listen:127.0.0.1:0", "connect:%s,encrypt=psk:%s" % (mitm.addr, key))
    c = connect_tcp(front.addr("A"))
    data = os.urandom(1 << 20)
    t = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)), daemon=True)
    t.start()
    got = bytearray()
    try:
        got = bytearray(recv_until_eof(c))
    except (ConnectionResetError, OSError):
        pass
    # Whatever came back is the start of what was sent: the tampered
    # message and everything after it never reached the echo server.
    assert len(got) < len(data)
    assert bytes(got) == data[:len(got)]
    back.wait_stderr(r"encrypt: message failed authentication \(tampered or corrupted stream\)")
