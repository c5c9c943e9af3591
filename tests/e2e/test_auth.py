"""auth=token and auth=hmac, black-box, against real peers (python sockets,
ncat, socat, and other sockjoin processes).

    listen:P,auth=token:FILE   the peer's first line must be the file's content
    listen:P,auth=hmac:FILE    sockjoin sends a 64-hex challenge line; the peer
                               answers hex(HMAC-SHA256(key, challenge)) + "\\n";
                               a right answer is confirmed with "ok\\n"
    connect:H:P,auth=...       sockjoin presents the token / answers the challenge
    --persist N                standing connections of the auth'd connect side

A refused peer gets one reason line and is closed; -v logs
"A 127.0.0.1:PORT refused: REASON". Refused sockets never queue.
"""

import hashlib
import hmac
import os
import re
import select
import socket
import subprocess
import time

import pytest

from conftest import (DEADLINE, Worker, connect_tcp, connect_unix, echo_handler, expect_closed,
                      recv_exact, recv_hash_until_eof, recv_until_eof, run_sockjoin,
                      send_all_then_shutdown, sha256, wait_for)

LOCAL = "listen:127.0.0.1:0"
TOKEN = b"s3cret"
KEY = b"rendezvous key"
HEX64 = re.compile(rb"[0-9a-f]{64}\n")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@pytest.fixture
def secrets(tmp_path):
    """secrets(name, content) -> path of a file holding content (bytes)."""
    def make(name, content):
        path = tmp_path / name
        path.write_bytes(content)
        return str(path)
    return make


def refused_line(side, sock, reason):
    """The -v line for a refused peer, as a regex."""
    return r"%s 127\.0\.0\.1:%d refused: %s$" % (side, sock.getsockname()[1], re.escape(reason))


def read_line(sock, limit=4096):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError("EOF after %r" % bytes(buf))
        buf += chunk
        assert len(buf) <= limit, "no newline in %d bytes" % limit
    return bytes(buf)


def answer(key, challenge_line):
    assert HEX64.fullmatch(challenge_line), challenge_line
    return hmac.new(key, challenge_line[:-1], hashlib.sha256).hexdigest().encode() + b"\n"


def hmac_client(addr, key, payload=b"", ok=True):
    """Connects, answers the challenge with key and sends payload; with ok,
    checks that the answer was confirmed."""
    s = connect_tcp(addr)
    challenge = read_line(s)
    s.sendall(answer(key, challenge) + payload)
    if ok:
        assert read_line(s) == b"ok\n"
    return s, challenge


def expect_refusal(sock, reason):
    """The peer gets exactly the reason line, then the end."""
    kind, data = expect_closed(sock)
    assert data == reason.encode() + b"\n", (kind, data)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# --------------------------------------------------------------------------
# auth=token
# --------------------------------------------------------------------------

def test_token_ok_relays_only_what_follows_the_token(sockjoin, sockets, secrets):
    tok = secrets("tok", TOKEN + b"\n")
    sj = sockjoin("-v", LOCAL + ",auth=token:" + tok, LOCAL)
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(TOKEN + b"\nhello")  # the token line and early data in one segment
    sj.wait_stderr(r"A accepted")
    b = sockets(connect_tcp(sj.addr("B")))
    assert recv_exact(b, 5) == b"hello"
    b.sendall(b"back")
    a.sendall(b" again")
    a.shutdown(socket.SHUT_WR)
    b.shutdown(socket.SHUT_WR)
    assert recv_until_eof(b) == b" again"
    assert recv_until_eof(a) == b"back"
    # Counts are of relayed bytes: the token line is not one.
    sj.wait_stderr(r"pair 1 closed: A->B 11 bytes, B->A 4 bytes$")
    assert not sj.stderr_matches(r"refused")


def test_token_from_socat_with_crlf(sockjoin, sockets, secrets):
    tok = secrets("tok", TOKEN + b"\n")
    sj = sockjoin(LOCAL + ",auth=token:" + tok, LOCAL)
    b = sockets(connect_tcp(sj.addr("B")))
    p = subprocess.run(["socat", "-t", "5", "-", "TCP:%s:%d" % sj.addr("A")],
                       input=TOKEN + b"\r\nfrom socat\n", capture_output=True, timeout=DEADLINE)
    assert p.returncode == 0, p.stderr
    assert recv_until_eof(b) == b"from socat\n"


def test_token_wrong_is_refused_and_never_paired(sockjoin, sockets, secrets):
    tok = secrets("tok", TOKEN + b"\n")
    sj = sockjoin("-v", LOCAL + ",auth=token:" + tok, LOCAL)
    bad = sockets(connect_tcp(sj.addr("A")))
    bad.sendall(b"s3cre\nnot for B")
    expect_refusal(bad, "auth failed: wrong token")
    sj.wait_stderr(refused_line("A", bad, "auth failed: wrong token"))
    # Neither a prefix of the token, nor the token with more on its line.
    for attempt in (b"s3cret!\n", b"S3CRET\n", b"\n", b" s3cret\n"):
        s = sockets(connect_tcp(sj.addr("A")))
        s.sendall(attempt)
        expect_refusal(s, "auth failed: wrong token")
    # B pairs with the next good A, not with a refused one.
    b = sockets(connect_tcp(sj.addr("B")))
    good = sockets(connect_tcp(sj.addr("A")))
    good.sendall(TOKEN + b"\nfrom the good one")
    assert recv_exact(b, 17) == b"from the good one"
    sj.wait_stderr(r"pair 1 formed: A 127\.0\.0\.1:%d <-> B" % good.getsockname()[1])
    assert len(sj.stderr_matches(r"refused: auth failed: wrong token")) == 5


def test_token_wrong_with_ncat(sockjoin, secrets):
    tok = secrets("tok", TOKEN + b"\n")
    sj = sockjoin("-v", LOCAL + ",auth=token:" + tok, LOCAL)
    p = subprocess.run(["ncat", "127.0.0.1", str(sj.addr("A")[1])], input=b"guess\n",
                       capture_output=True, timeout=DEADLINE)
    assert p.stdout == b"auth failed: wrong token\n", p
    sj.wait_stderr(r"A 127\.0\.0\.1:\d+ refused: auth failed: wrong token$")


def test_secret_file_trailing_newline_is_not_part_of_it(sockjoin, sockets, tmp_path):
    # What `echo s3cret > f` writes.
    subprocess.run("echo s3cret > tok && printf 'rendezvous key\\n' > key", shell=True,
                   cwd=str(tmp_path), check=True)
    sj = sockjoin(LOCAL + ",auth=token:" + str(tmp_path / "tok"),
                  LOCAL + ",auth=hmac:" + str(tmp_path / "key"))
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(b"s3cret\nA")
    b, _ = hmac_client(sj.addr("B"), KEY, b"B")  # the key without its newline
    sockets(b)
    assert recv_exact(b, 1) == b"A"
    assert recv_exact(a, 1) == b"B"


def test_only_one_trailing_newline_is_stripped(sockjoin, sockets, secrets):
    tok = secrets("tok", b"line\n\n")  # the secret is "line\n": no single line can match it
    sj = sockjoin(LOCAL + ",auth=token:" + tok, LOCAL)
    s = sockets(connect_tcp(sj.addr("A")))
    s.sendall(b"line\n")
    expect_refusal(s, "auth failed: wrong token")


@pytest.mark.parametrize("path", [[], ["--no-splice"]], ids=["splice", "copy"])
def test_bulk_after_token_keeps_order(sockjoin, sockets, secrets, path):
    """The bytes that came with the token line are delivered first, then the
    rest of the stream (on the zero-copy path once they are out)."""
    tok = secrets("tok", TOKEN + b"\n")
    sj = sockjoin(*path, LOCAL + ",auth=token:" + tok, LOCAL + ",auth=token:" + tok)
    data = os.urandom(8 << 20)
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    a.sendall(TOKEN + b"\n" + data[:1000])  # early bytes with the token
    b.sendall(TOKEN + b"\n")
    w = Worker(send_all_then_shutdown, a, data[1000:])
    w.start()
    n, h = recv_hash_until_eof(b)
    w.join_result()
    assert (n, h) == (len(data), sha256(data))


def test_unix_sides_with_auth(sockjoin, sockets, servers, secrets, short_tmp):
    tok = secrets("tok", TOKEN + b"\n")
    server = servers(unix_path=os.path.join(short_tmp, "service.sock"))
    listen_path = os.path.join(short_tmp, "in.sock")
    sj = sockjoin("-v", "unix-listen:%s,auth=token:%s" % (listen_path, tok),
                  "unix:%s,auth=token:%s" % (server.addr, tok))
    bad = sockets(connect_unix(listen_path))
    bad.sendall(b"nope\n")
    expect_refusal(bad, "auth failed: wrong token")
    sj.wait_stderr(r"A unix:%s refused: auth failed: wrong token$" % re.escape(listen_path))
    good = sockets(connect_unix(listen_path))
    good.sendall(TOKEN + b"\nover unix")
    conn = server.accept_next()
    assert recv_exact(conn, len(TOKEN) + 10) == TOKEN + b"\nover unix"


# --------------------------------------------------------------------------
# auth=hmac
# --------------------------------------------------------------------------

def test_hmac_ok(sockjoin, sockets, secrets):
    key = secrets("key", KEY + b"\n")
    sj = sockjoin("-v", LOCAL + ",auth=hmac:" + key, LOCAL + ",auth=hmac:" + key)
    a, ca = hmac_client(sj.addr("A"), KEY, b"from A")
    b, cb = hmac_client(sj.addr("B"), KEY, b"from B")
    sockets(a), sockets(b)
    assert ca != cb  # a fresh nonce per connection
    assert recv_exact(b, 6) == b"from A"
    assert recv_exact(a, 6) == b"from B"
    a.shutdown(socket.SHUT_WR)
    b.shutdown(socket.SHUT_WR)
    assert recv_until_eof(a) == b""
    assert recv_until_eof(b) == b""
    sj.wait_stderr(r"pair 1 closed: A->B 6 bytes, B->A 6 bytes$")


def test_hmac_fifo_by_auth_completion(sockjoin, sockets, secrets):
    """Refused and stalled peers in between do not disturb the order: the
    i-th A confirmed ("ok") pairs with the i-th B confirmed."""
    key = secrets("key", KEY)
    sj = sockjoin("-v", LOCAL + ",auth=hmac:" + key, LOCAL + ",auth=hmac:" + key)
    good_a = []
    for i in range(3):
        s, _ = hmac_client(sj.addr("A"), KEY, b"A%d" % i)
        good_a.append(sockets(s))
        bad, _ = hmac_client(sj.addr("A"), b"wrong", ok=False)
        sockets(bad)
        sockets(connect_tcp(sj.addr("A")))  # stalls: never answers
    # An A that connected first but answers last is the last in the queue.
    late = sockets(connect_tcp(sj.addr("A")))
    late_challenge = read_line(late)
    good_b = []
    for i in range(3):
        s, _ = hmac_client(sj.addr("B"), KEY)
        good_b.append(sockets(s))
    late.sendall(answer(KEY, late_challenge) + b"LATE")
    assert read_line(late) == b"ok\n"
    last_b, _ = hmac_client(sj.addr("B"), KEY)
    sockets(last_b)
    for i in range(3):
        assert recv_exact(good_b[i], 2) == b"A%d" % i
        sj.wait_stderr(r"pair %d formed: A 127\.0\.0\.1:%d <-> B 127\.0\.0\.1:%d$"
                       % (i + 1, good_a[i].getsockname()[1], good_b[i].getsockname()[1]))
    assert recv_exact(last_b, 4) == b"LATE"
    assert len(sj.stderr_matches(r"refused")) == 3


def test_hmac_answer_in_pieces(sockjoin, sockets, secrets):
    key = secrets("key", KEY)
    sj = sockjoin(LOCAL + ",auth=hmac:" + key, LOCAL)
    a = sockets(connect_tcp(sj.addr("A")))
    reply = answer(KEY, read_line(a)) + b"payload"
    b = sockets(connect_tcp(sj.addr("B")))
    for i in range(0, len(reply), 7):
        a.sendall(reply[i:i + 7])
    assert recv_exact(b, 7) == b"payload"
    assert read_line(a) == b"ok\n"


def test_hmac_wrong_answers(sockjoin, sockets, secrets):
    key = secrets("key", KEY)
    sj = sockjoin("-v", LOCAL + ",auth=hmac:" + key, LOCAL)
    reason = "auth failed: wrong answer to the challenge"
    # Another key.
    s, _ = hmac_client(sj.addr("A"), b"not the key", ok=False)
    sockets(s)
    expect_refusal(s, reason)
    sj.wait_stderr(refused_line("A", s, reason))
    # A replayed answer: right for another connection's challenge.
    first = sockets(connect_tcp(sj.addr("A")))
    second = sockets(connect_tcp(sj.addr("A")))
    c1 = read_line(first)
    read_line(second)  # its own challenge, not answered
    second.sendall(answer(KEY, c1))
    expect_refusal(second, reason)
    # Upper-case hex, garbage, the challenge itself.
    for bad in (lambda c: answer(KEY, c).upper(), lambda c: b"zz\n", lambda c: c):
        s = sockets(connect_tcp(sj.addr("A")))
        s.sendall(bad(read_line(s)))
        expect_refusal(s, reason)
    # The first one can still answer its own.
    first.sendall(answer(KEY, c1) + b"late but right")
    assert read_line(first) == b"ok\n"
    b = sockets(connect_tcp(sj.addr("B")))
    assert recv_exact(b, 14) == b"late but right"


def test_connect_side_presents_token(sockjoin, sockets, servers, secrets):
    tok = secrets("tok", TOKEN + b"\n")
    server = servers()
    sj = sockjoin(LOCAL, "connect:" + server.addr + ",auth=token:" + tok)
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(b"data")
    conn = server.accept_next()
    assert recv_exact(conn, len(TOKEN) + 5) == TOKEN + b"\ndata"
    conn.sendall(b"reply")
    assert recv_exact(a, 5) == b"reply"


def test_connect_side_answers_challenge(sockjoin, sockets, servers, secrets):
    key = secrets("key", KEY + b"\n")
    server = servers()
    sj = sockjoin(LOCAL, "connect:" + server.addr + ",auth=hmac:" + key)
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(b"early")
    conn = server.accept_next()
    challenge = os.urandom(32).hex().encode() + b"\n"
    conn.sendall(challenge)
    assert recv_exact(conn, 65) == answer(KEY, challenge)
    # Nothing is relayed before the answer is confirmed.
    r, _, _ = select.select([conn], [], [], 0.5)
    assert not r
    conn.sendall(b"ok\n")
    # What A sent before comes after the answer, and replies flow back.
    assert recv_exact(conn, 5) == b"early"
    conn.sendall(b"welcome")
    assert recv_exact(a, 7) == b"welcome"


def test_connect_side_takes_ok_and_data_with_the_challenge(sockjoin, sockets, servers, secrets):
    """The verdict (and data behind it) may come in the same segment as the
    challenge; a peer that already knows the answer is right may do so."""
    key = secrets("key", KEY)
    server = servers()
    sj = sockjoin(LOCAL, "connect:" + server.addr + ",auth=hmac:" + key)
    a = sockets(connect_tcp(sj.addr("A")))
    conn = server.accept_next()
    challenge = os.urandom(32).hex().encode() + b"\n"
    conn.sendall(challenge + b"ok\nserver data")
    assert recv_exact(conn, 65) == answer(KEY, challenge)
    assert recv_exact(a, 11) == b"server data"


def test_connect_side_refused_by_its_peer(sockjoin, sockets, servers, secrets):
    key = secrets("key", KEY)
    server = servers()
    sj = sockjoin("-v", LOCAL, "connect:" + server.addr + ",auth=hmac:" + key)
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(b"must not leak")
    conn = server.accept_next()
    conn.sendall(os.urandom(32).hex().encode() + b"\n")
    read_line(conn)  # the answer
    conn.sendall(b"auth failed: not today\n")
    kind, data = expect_closed(conn)
    assert b"must not leak" not in data
    kind, data = expect_closed(a)
    assert data == b""
    sj.wait_stderr(r"B 127\.0\.0\.1:%d refused: the peer refused us: auth failed: not today$"
                   % server.port)


def test_connect_side_refuses_a_peer_without_challenge(sockjoin, sockets, servers, secrets):
    key = secrets("key", KEY)
    server = servers()
    sj = sockjoin("-v", LOCAL, "connect:" + server.addr + ",auth=hmac:" + key)
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(b"must not leak")
    conn = server.accept_next()
    conn.sendall(b"hello, I am not sockjoin\n")
    kind, data = expect_closed(conn)
    assert data == b"auth failed: the peer sent no hmac challenge\n", (kind, data)
    expect_closed(a)
    sj.wait_stderr(r"B 127\.0\.0\.1:%d refused: auth failed: the peer sent no hmac challenge$"
                   % server.port)


# --------------------------------------------------------------------------
# Peers that stall or flood
# --------------------------------------------------------------------------

def test_peer_that_sends_nothing_times_out(sockjoin, sockets, secrets):
    tok = secrets("tok", TOKEN)
    key = secrets("key", KEY)
    sj = sockjoin("-v", "--auth-timeout", "1", LOCAL + ",auth=token:" + tok,
                  LOCAL + ",auth=hmac:" + key)
    t0 = time.monotonic()
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    half = sockets(connect_tcp(sj.addr("A")))
    half.sendall(TOKEN)  # no newline
    expect_refusal(a, "auth failed: timed out")
    expect_refusal(half, "auth failed: timed out")
    kind, data = expect_closed(b)
    assert HEX64.fullmatch(data[:65]) and data[65:] == b"auth failed: timed out\n", data
    assert time.monotonic() - t0 >= 0.9
    for side, s in (("A", a), ("B", b), ("A", half)):
        sj.wait_stderr(refused_line(side, s, "auth timed out"))
    # Still serving.
    good = sockets(connect_tcp(sj.addr("A")))
    good.sendall(TOKEN + b"\nok")
    other, _ = hmac_client(sj.addr("B"), KEY)
    sockets(other)
    assert recv_exact(other, 2) == b"ok"


@pytest.mark.parametrize("auth", ["token", "hmac"])
def test_one_mib_without_newline(sockjoin, sockets, secrets, auth):
    path = secrets("secret", KEY)
    sj = sockjoin("-v", LOCAL + ",auth=%s:%s" % (auth, path), LOCAL)
    flood = sockets(connect_tcp(sj.addr("A")))
    if auth == "hmac":
        read_line(flood)

    def send_mib():
        try:
            flood.sendall(b"x" * (1 << 20))
            flood.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # a reset once the reason is out is fine too
    w = Worker(send_mib)
    w.start()
    kind, data = expect_closed(flood)
    assert data == b"auth failed: auth line too long\n", (kind, data[:100])
    w.join_result()
    sj.wait_stderr(refused_line("A", flood, "auth failed: auth line too long"))
    # Others are still served.
    if auth == "token":
        good = sockets(connect_tcp(sj.addr("A")))
        good.sendall(KEY + b"\nstill here")
    else:
        good, _ = hmac_client(sj.addr("A"), KEY, b"still here")
        sockets(good)
    b = sockets(connect_tcp(sj.addr("B")))
    assert recv_exact(b, 10) == b"still here"


def test_descriptors_back_to_baseline_after_rejected_burst(sockjoin, sockets, secrets):
    tok = secrets("tok", TOKEN)
    key = secrets("key", KEY)
    sj = sockjoin("--auth-timeout", "1", LOCAL + ",auth=token:" + tok, LOCAL + ",auth=hmac:" + key)
    baseline = open_fds(sj.pid)
    peers = []
    for i in range(30):
        s = connect_tcp(sj.addr("A"))
        s.sendall(b"wrong %d\n" % i)
        peers.append(s)
    for i in range(10):
        s, _ = hmac_client(sj.addr("B"), b"wrong key", ok=False)
        peers.append(s)
    for i in range(10):
        peers.append(connect_tcp(sj.addr("A")))  # silent: the deadline refuses them
    for i in range(5):
        s = connect_tcp(sj.addr("A"))
        s.sendall(b"y" * 5000)
        peers.append(s)
    assert open_fds(sj.pid) > baseline
    for s in peers:
        kind, data = expect_closed(s)
        assert data.startswith(b"auth failed: ") or HEX64.match(data), data[:100]
        s.close()
    wait_for(lambda: open_fds(sj.pid) == baseline, what="descriptors back to %d (now %d)"
             % (baseline, open_fds(sj.pid)))
    # And it still works.
    a = sockets(connect_tcp(sj.addr("A")))
    a.sendall(TOKEN + b"\nalive")
    b, _ = hmac_client(sj.addr("B"), KEY)
    sockets(b)
    assert recv_exact(b, 5) == b"alive"


# --------------------------------------------------------------------------
# Two sockjoin instances authenticate each other
# --------------------------------------------------------------------------

def relay_with(sockjoin, key):
    return sockjoin("-v", LOCAL + ",auth=hmac:" + key, LOCAL + ",auth=hmac:" + key)


def test_two_ends_through_authenticating_relay(sockjoin, sockets, secrets):
    key = secrets("key", KEY + b"\n")
    relay = relay_with(sockjoin, key)
    end1 = sockjoin("-v", LOCAL, "connect:%s,auth=hmac:%s" % (relay.listening["A"], key))
    end2 = sockjoin("-v", LOCAL, "connect:%s,auth=hmac:%s" % (relay.listening["B"], key))
    c1 = sockets(connect_tcp(end1.addr("A")))
    c1.sendall(b"one to two")
    c2 = sockets(connect_tcp(end2.addr("A")))
    assert recv_exact(c2, 10) == b"one to two"
    c2.sendall(b"two to one")
    assert recv_exact(c1, 10) == b"two to one"
    relay.wait_stderr(r"pair 1 formed")
    assert not relay.stderr_matches(r"refused")


def test_end_with_wrong_key_is_refused_by_relay(sockjoin, sockets, secrets):
    key = secrets("key", KEY)
    wrong = secrets("wrong", b"another key")
    relay = relay_with(sockjoin, key)
    end = sockjoin("-v", LOCAL, "connect:%s,auth=hmac:%s" % (relay.listening["A"], wrong))
    c = sockets(connect_tcp(end.addr("A")))
    c.sendall(b"should not pass")
    # The relay refuses it; the client's connection ends (the reason line
    # reaches the end's peer: the relay's refusal is all the end hears).
    kind, data = expect_closed(c)
    assert b"should not pass" not in data
    relay.wait_stderr(r"A 127\.0\.0\.1:\d+ refused: auth failed: wrong answer to the challenge$")


# ---- --persist ----------------------------------------------------------

def echo_service(servers, banner=b""):
    def handler(conn, index):
        if banner:
            conn.sendall(banner)
        echo_handler(conn, index)
    return servers(handler=handler)


def start_rendezvous(sockjoin, key, service, persist=2):
    relay = relay_with(sockjoin, key)
    device = sockjoin("-v", "--persist", str(persist), "connect:" + service.addr,
                      "connect:%s,auth=hmac:%s" % (relay.listening["B"], key), wait=False)
    client_end = sockjoin("-v", LOCAL, "connect:%s,auth=hmac:%s" % (relay.listening["A"], key))
    # Both standing connections have authenticated at the relay.
    relay.wait_stderr(r"B accepted", count=persist)
    return relay, device, client_end


def session(addr, text):
    s = connect_tcp(addr)
    try:
        s.sendall(text)
        got = recv_exact(s, len(text))
        s.shutdown(socket.SHUT_WR)
        rest = recv_until_eof(s)
        return got + rest
    finally:
        s.close()


def test_persist_serves_session_after_session(sockjoin, servers, secrets):
    key = secrets("key", KEY + b"\n")
    service = echo_service(servers)
    relay, device, client_end = start_rendezvous(sockjoin, key, service)
    assert service.accepts == 0  # nothing dialled before a peer speaks
    for i in range(6):
        text = b"session %d\n" % i
        assert session(client_end.addr("A"), text) == text
        device.wait_stderr(r"pair %d closed" % (i + 1))
    assert service.accepts == 6
    # Several at once.
    workers = [Worker(session, client_end.addr("A"), b"parallel %d\n" % i) for i in range(3)]
    for w in workers:
        w.start()
    assert sorted(w.join_result() for w in workers) == [b"parallel %d\n" % i for i in range(3)]
    assert service.accepts == 9
    assert not relay.stderr_matches(r"refused")
    assert device.alive() and relay.alive() and client_end.alive()


def test_persist_server_speaks_first_once_client_speaks(sockjoin, sockets, servers, secrets):
    """Without encrypt=, a standing connection dials the service only when
    its peer's first byte arrives, so a server-speaks-first service is
    reached once the client says something (as an ssh client does at once:
    it sends its own banner without waiting)."""
    key = secrets("key", KEY)
    service = echo_service(servers, banner=b"SERVICE READY\n")
    relay, device, client_end = start_rendezvous(sockjoin, key, service, persist=1)
    c = sockets(connect_tcp(client_end.addr("A")))
    relay.wait_stderr(r"pair 1 formed")
    # Paired at the relay, but the service has not been dialled: no banner.
    r, _, _ = select.select([c], [], [], 1.0)
    assert not r and service.accepts == 0
    c.sendall(b"CLIENT HELLO\n")
    assert recv_exact(c, 27) == b"SERVICE READY\nCLIENT HELLO\n"
    assert service.accepts == 1


def persist_with_wrong_secret(sockjoin, servers, secrets, auth):
    """A device whose secret the relay refuses: the service must never be
    dialled (the refusal is not its peer speaking), and the device must back
    off instead of reconnecting at once, again and again."""
    right = secrets("right", KEY)
    wrong = secrets("wrong", b"another secret")
    got = []

    def handler(conn, index):
        got.append(recv_until_eof(conn))
    service = servers(handler=handler)
    relay = sockjoin("-v", LOCAL + ",auth=%s:%s" % (auth, right),
                     LOCAL + ",auth=%s:%s" % (auth, right))
    sockjoin("-v", "--persist", "1", "connect:" + service.addr,
             "connect:%s,auth=%s:%s" % (relay.listening["B"], auth, wrong), wait=False)
    reason = "wrong answer to the challenge" if auth == "hmac" else "wrong token"
    relay.wait_stderr(r"B 127\.0\.0\.1:\d+ refused: auth failed: " + reason)
    deadline = time.monotonic() + 2  # a bounded look, not a synchronisation
    while time.monotonic() < deadline:
        assert service.accepts == 0, got[:3]
        time.sleep(0.05)
    assert len(relay.stderr_matches(r"refused")) < 20


def test_persist_with_wrong_key_never_dials_the_service(sockjoin, servers, secrets):
    persist_with_wrong_secret(sockjoin, servers, secrets, "hmac")


def test_persist_with_wrong_token_never_dials_the_service(sockjoin, servers, secrets):
    persist_with_wrong_secret(sockjoin, servers, secrets, "token")


# --------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------

def test_missing_secret_file_names_it(tmp_path):
    missing = str(tmp_path / "no-such-secret")
    r = run_sockjoin([LOCAL + ",auth=token:" + missing, LOCAL])
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "secret file %s: No such file or directory" % missing in err, err
    assert r.stdout == b""


def test_empty_secret_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")  # only a newline: empty once it is stripped
    r = run_sockjoin([LOCAL, "connect:127.0.0.1:9,auth=hmac:" + str(empty)])
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "secret file %s is empty" % empty in err, err


BAD_SIDE_OPTIONS = [
    (["listen:0,auth=foo:x", LOCAL],
     "sockjoin: bad side 'listen:0,auth=foo:x': bad auth 'foo:x' (expected token:FILE or hmac:FILE)"),
    (["listen:0,auth=token", LOCAL],
     "sockjoin: bad side 'listen:0,auth=token': bad auth 'token' (expected token:FILE or hmac:FILE)"),
    (["listen:0,auth", LOCAL], "sockjoin: bad side 'listen:0,auth': option 'auth' needs a value"),
    (["listen:0,auth=", LOCAL], "sockjoin: bad side 'listen:0,auth=': option 'auth' needs a value"),
    (["listen:0,auth=token:", LOCAL],
     "sockjoin: bad side 'listen:0,auth=token:': option 'auth' needs a value"),
    (["listen:0,", LOCAL], "sockjoin: bad side 'listen:0,': empty option"),
    (["listen:0,bogus=1", LOCAL], "sockjoin: bad side 'listen:0,bogus=1': unknown option 'bogus'"),
    ([LOCAL, "connect:h:1,auth=hmac"],
     "sockjoin: bad side 'connect:h:1,auth=hmac': bad auth 'hmac' (expected token:FILE or hmac:FILE)"),
    (["--auth-timeout", "0", LOCAL, LOCAL], "sockjoin: bad --auth-timeout '0': expected seconds > 0"),
    (["--auth-timeout", "abc", LOCAL, LOCAL],
     "sockjoin: bad --auth-timeout 'abc': expected seconds > 0"),
    (["--persist", "x", "connect:h:1", "connect:h:2"],
     "sockjoin: bad --persist 'x': expected a whole number from 1 to 1000"),
    (["--persist", "0", "connect:h:1", "connect:h:2"],
     "sockjoin: bad --persist '0': expected a whole number from 1 to 1000"),
    (["--persist", "2", LOCAL, "connect:h:2"], "sockjoin: --persist needs two connect: or unix: sides"),
    (["--persist", "2", "stdio", "connect:h:2"], "sockjoin: --persist needs two connect: or unix: sides"),
]


@pytest.mark.parametrize("argv,message", BAD_SIDE_OPTIONS, ids=[" ".join(c[0]) for c in BAD_SIDE_OPTIONS])
def test_bad_options(argv, message):
    r = run_sockjoin(argv, timeout=15)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.splitlines()[0] == message, err
    assert r.stdout == b""
