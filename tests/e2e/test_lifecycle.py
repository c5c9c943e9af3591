"""Process lifecycle and observability: --timeout, signals, --stats,
--verbose, --log-traffic, --max-pairs."""

import json
import re
import signal
import socket
import time

import pytest

from conftest import (DEADLINE, ISO_RE, assert_no_data, connect_tcp, expect_closed, free_port,
                      recv_exact, recv_until_eof, wait_for)

LL = ("listen:127.0.0.1:0", "listen:127.0.0.1:0")


def open_pair(sj, sockets):
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    a.sendall(b"?")
    assert recv_exact(b, 1) == b"?"
    return a, b


def close_pair(a, b):
    a.shutdown(socket.SHUT_WR)
    assert recv_until_eof(b) == b""
    b.shutdown(socket.SHUT_WR)
    assert recv_until_eof(a) == b""
    a.close()
    b.close()


# --------------------------------------------------------------------------
# --timeout and signals
# --------------------------------------------------------------------------

def test_timeout_without_pair_exits_0(sockjoin):
    timeout = 1.5
    sj = sockjoin("--timeout", str(timeout), *LL)
    rc = sj.wait_exit(timeout + DEADLINE)
    elapsed = time.monotonic() - sj.started
    assert rc == 0, sj.stderr_text()
    assert elapsed >= timeout - 0.05, "exited after %.2fs, before the %.1fs timeout" % (elapsed, timeout)
    assert elapsed < timeout + 15, "exited after %.2fs" % elapsed


def test_timeout_fractional_seconds(sockjoin):
    sj = sockjoin("--timeout", "0.5", *LL)
    rc = sj.wait_exit()
    elapsed = time.monotonic() - sj.started
    assert rc == 0
    assert 0.45 <= elapsed < 15, elapsed


def test_timeout_waits_for_open_pair(sockjoin, sockets):
    timeout = 2.0
    sj = sockjoin("-v", "--timeout", str(timeout), *LL)
    a, b = open_pair(sj, sockets)
    sj.wait_stderr(r"pair 1 formed")
    # Stay alive well past the timeout while the pair is open.
    remaining = timeout - (time.monotonic() - sj.started)
    sj.assert_running_for(max(remaining, 0) + 1.5)
    # The pair still works.
    b.sendall(b"after the timeout")
    assert recv_exact(a, 17) == b"after the timeout"
    # Closing the last pair ends the process.
    close_pair(a, b)
    assert sj.wait_exit() == 0, sj.stderr_text()


def test_timeout_waits_for_last_of_several_pairs(sockjoin, sockets):
    timeout = 2.0
    sj = sockjoin("-v", "--timeout", str(timeout), *LL)
    p1 = open_pair(sj, sockets)
    p2 = open_pair(sj, sockets)
    sj.wait_stderr(r"pair 2 formed")
    close_pair(*p1)
    sj.wait_stderr(r"pair 1 closed")
    # Pair 2 is still open when the timeout passes: keep running.
    remaining = timeout - (time.monotonic() - sj.started)
    sj.assert_running_for(max(remaining, 0) + 1.0)
    close_pair(*p2)
    assert sj.wait_exit() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_open_pair_exits_0(sockjoin, sockets, sig):
    sj = sockjoin(*LL)
    a, b = open_pair(sj, sockets)
    a.sendall(b"in flight")
    assert recv_exact(b, 9) == b"in flight"
    # An unpaired waiting connection too.
    waiting = sockets(connect_tcp(sj.addr("A")))
    sj.signal(sig)
    assert sj.wait_exit() == 0, sj.stderr_text()
    # Every socket is closed afterwards.
    expect_closed(b)
    expect_closed(a)
    expect_closed(waiting)


def test_sigterm_idle_exits_0(sockjoin):
    sj = sockjoin(*LL)
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    assert sj.stdout_until_eof() == b""


# --------------------------------------------------------------------------
# --stats
# --------------------------------------------------------------------------

def last_json_line(sj):
    lines = [l for l in sj.stderr_lines() if l.strip()]
    assert lines, "no stderr output"
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise AssertionError("last stderr line is not JSON: %r\nstderr:\n%s" % (lines[-1], sj.stderr_text()))


def check_sockets(entry, expected_ports):
    """entry: {"HOST": [{"port": P, "timestamp": ...}]}."""
    assert isinstance(entry, dict), entry
    assert set(entry) == {"127.0.0.1"}, entry
    records = entry["127.0.0.1"]
    assert isinstance(records, list)
    assert sorted(r["port"] for r in records) == sorted(expected_ports), records
    for r in records:
        assert isinstance(r["port"], int)
        assert re.fullmatch(ISO_RE, r["timestamp"]), r["timestamp"]


def test_stats_json_on_exit(sockjoin, sockets):
    sj = sockjoin("-v", "--stats", *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    b = sockets(connect_tcp(sj.addr("B")))
    ports_a = [a.getsockname()[1]]
    ports_b = [b.getsockname()[1]]
    a.sendall(b"a" * 1000)
    assert recv_exact(b, 1000) == b"a" * 1000
    b.sendall(b"b" * 500)
    assert recv_exact(a, 500) == b"b" * 500
    close_pair(a, b)
    sj.wait_stderr(r"pair 1 closed")
    # A connection still waiting for a partner is not a paired socket.
    waiting = sockets(connect_tcp(sj.addr("A")))
    sj.wait_stderr(r"\bA accepted 127\.0\.0\.1:%d\b" % waiting.getsockname()[1])
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    stats = last_json_line(sj)
    assert stats["pairs"] == 1
    assert stats["bytes_a_to_b"] == 1000
    assert stats["bytes_b_to_a"] == 500
    check_sockets(stats["sockets_a"], ports_a)
    check_sockets(stats["sockets_b"], ports_b)


def test_stats_counts_several_pairs(sockjoin, sockets):
    sj = sockjoin("--stats", *LL)
    ports_a, ports_b = [], []
    total_ab = total_ba = 0
    for i in range(3):
        a = sockets(connect_tcp(sj.addr("A")))
        b = sockets(connect_tcp(sj.addr("B")))
        ports_a.append(a.getsockname()[1])
        ports_b.append(b.getsockname()[1])
        n_ab, n_ba = 100 * (i + 1), 7 * (i + 1)
        a.sendall(b"x" * n_ab)
        assert recv_exact(b, n_ab) == b"x" * n_ab
        b.sendall(b"y" * n_ba)
        assert recv_exact(a, n_ba) == b"y" * n_ba
        total_ab += n_ab
        total_ba += n_ba
        close_pair(a, b)
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    stats = last_json_line(sj)
    assert stats["pairs"] == 3
    assert stats["bytes_a_to_b"] == total_ab
    assert stats["bytes_b_to_a"] == total_ba
    check_sockets(stats["sockets_a"], ports_a)
    check_sockets(stats["sockets_b"], ports_b)


def test_stats_with_connect_connect_exit(sockjoin, servers):
    sa, sb = servers(), servers()
    sj = sockjoin("--stats", "connect:" + sa.addr, "connect:" + sb.addr)
    a = sa.accept_next()
    b = sb.accept_next()
    a.sendall(b"12345")
    assert recv_exact(b, 5) == b"12345"
    close_pair(a, b)
    assert sj.wait_exit() == 0
    stats = last_json_line(sj)
    assert stats["pairs"] == 1
    assert stats["bytes_a_to_b"] == 5
    assert stats["bytes_b_to_a"] == 0
    # The sockets are the ones sockjoin connected to.
    assert [r["port"] for r in stats["sockets_a"]["127.0.0.1"]] == [sa.port]
    assert [r["port"] for r in stats["sockets_b"]["127.0.0.1"]] == [sb.port]


def test_no_stats_without_flag(sockjoin, sockets):
    sj = sockjoin(*LL)
    close_pair(*open_pair(sj, sockets))
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    for line in sj.stderr_lines():
        assert '"pairs"' not in line, line


# --------------------------------------------------------------------------
# --verbose
# --------------------------------------------------------------------------

def test_verbose_events_listen_listen(sockjoin, sockets):
    sj = sockjoin("--verbose", *LL)
    a = sockets(connect_tcp(sj.addr("A")))
    pa = a.getsockname()[1]
    sj.wait_stderr(r"\bA accepted 127\.0\.0\.1:%d\b" % pa)
    b = sockets(connect_tcp(sj.addr("B")))
    pb = b.getsockname()[1]
    sj.wait_stderr(r"\bB accepted 127\.0\.0\.1:%d\b" % pb)
    sj.wait_stderr(r"\bpair 1 formed: A 127\.0\.0\.1:%d <-> B 127\.0\.0\.1:%d\b" % (pa, pb))
    a.sendall(b"x" * 1234)
    assert recv_exact(b, 1234)
    b.sendall(b"y" * 56)
    assert recv_exact(a, 56)
    close_pair(a, b)
    sj.wait_stderr(r"\bpair 1 closed: A->B 1234 bytes, B->A 56 bytes\b")
    # Every verbose line starts with an ISO-8601 UTC timestamp.
    for pattern in (r"accepted", r"pair 1 formed", r"pair 1 closed"):
        for m in sj.stderr_matches(pattern):
            assert re.match(ISO_RE + r" ", m.string), "no timestamp: %r" % m.string


def test_verbose_events_listen_connect(sockjoin, servers, sockets):
    backend = servers()
    sj = sockjoin("-v", "listen:127.0.0.1:0", "connect:" + backend.addr)
    a = sockets(connect_tcp(sj.addr("A")))
    pa = a.getsockname()[1]
    b = backend.accept_next()
    sj.wait_stderr(r"\bA accepted 127\.0\.0\.1:%d\b" % pa)
    sj.wait_stderr(r"\bB connected 127\.0\.0\.1:%d\b" % backend.port)
    sj.wait_stderr(r"\bpair 1 formed: A 127\.0\.0\.1:%d <-> B 127\.0\.0\.1:%d\b" % (pa, backend.port))
    a.sendall(b"abc")
    assert recv_exact(b, 3) == b"abc"
    close_pair(a, b)
    sj.wait_stderr(r"\bpair 1 closed: A->B 3 bytes, B->A 0 bytes\b")


def test_quiet_without_verbose(sockjoin, sockets):
    sj = sockjoin(*LL)
    close_pair(*open_pair(sj, sockets))
    sj.signal(signal.SIGTERM)
    assert sj.wait_exit() == 0
    for pattern in (r"accepted", r"pair \d+ formed", r"pair \d+ closed", r" -> "):
        assert not sj.stderr_matches(pattern), sj.stderr_text()


def test_failure_logged_without_verbose(sockjoin, sockets):
    dead = free_port()
    sj = sockjoin("listen:127.0.0.1:0", "connect:127.0.0.1:%d" % dead)
    a = sockets(connect_tcp(sj.addr("A")))
    expect_closed(a)
    sj.wait_stderr(r"\bB connect to 127\.0\.0\.1:%d failed: connection refused" % dead)


# --------------------------------------------------------------------------
# --log-traffic
# --------------------------------------------------------------------------

ASCII_LINE = r"\b%s -> %s \(pair %d, (\d+) bytes\): (.*)$"


def traffic_text(sj, src, dst, pair=1):
    """Concatenate the ascii text of all chunks for one direction."""
    total = 0
    text = ""
    for m in sj.stderr_matches(ASCII_LINE % (src, dst, pair)):
        n = int(m.group(1))
        assert len(m.group(2)) == n, "chunk of %d bytes shown as %r" % (n, m.group(2))
        total += n
        text += m.group(2)
    return total, text


def test_log_traffic_ascii(sockjoin, sockets):
    sj = sockjoin("--log-traffic", *LL)
    a, b = sockets(connect_tcp(sj.addr("A"))), sockets(connect_tcp(sj.addr("B")))
    a.sendall(b"hello\n")
    assert recv_exact(b, 6) == b"hello\n"
    sj.wait_stderr(r"\bA -> B \(pair 1, 6 bytes\): hello\.$")
    msg = b"bin\x00\x01\x7f\xff\tend\r\n"
    b.sendall(msg)
    assert recv_exact(a, len(msg)) == msg
    sj.wait_stderr(r"\bB -> A \(pair 1, %d bytes\): bin\.\.\.\.\.end\.\.$" % len(msg))
    # A bigger transfer may be chunked: the concatenation must be exact.
    big = bytes(range(32, 127)) * 200
    a.sendall(big)
    assert recv_exact(b, len(big)) == big
    want = 6 + len(big)

    def complete():
        return traffic_text(sj, "A", "B")[0] >= want
    wait_for(complete, what="all A->B traffic logged")
    n, text = traffic_text(sj, "A", "B")
    assert n == want
    assert text == "hello." + big.decode()


def test_log_traffic_ascii_explicit(sockjoin, sockets):
    sj = sockjoin("--log-traffic=ascii", *LL)
    a, b = sockets(connect_tcp(sj.addr("A"))), sockets(connect_tcp(sj.addr("B")))
    b.sendall(b"pong")
    assert recv_exact(a, 4) == b"pong"
    sj.wait_stderr(r"\bB -> A \(pair 1, 4 bytes\): pong$")


def hexdump_lines(data, offset=0):
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexpart = " ".join("%02x" % c for c in chunk[:8])
        if len(chunk) > 8:
            hexpart += "  " + " ".join("%02x" % c for c in chunk[8:])
        text = "".join(chr(c) if 32 <= c < 127 else "." for c in chunk)
        lines.append("%08x  %-49s |%s|" % (offset + off, hexpart, text))
    return lines


def test_hexdump_helper_matches_hexdump_tool():
    import subprocess
    data = b"The quick brown fox jumps\x00\x01\xff over"
    out = subprocess.run(["hexdump", "-C"], input=data, capture_output=True, check=True).stdout.decode()
    assert out.splitlines()[:-1] == hexdump_lines(data)
    out = subprocess.run(["hexdump", "-C"], input=b"hello\n", capture_output=True, check=True).stdout.decode()
    assert out.splitlines()[0] == "00000000  68 65 6c 6c 6f 0a                                 |hello.|"


def test_log_traffic_hex(sockjoin, sockets):
    sj = sockjoin("--log-traffic=hex", *LL)
    a, b = sockets(connect_tcp(sj.addr("A"))), sockets(connect_tcp(sj.addr("B")))
    a.sendall(b"hello\n")
    assert recv_exact(b, 6) == b"hello\n"
    sj.wait_stderr(r"\bA -> B \(pair 1, 6 bytes\):$")
    sj.wait_stderr(re.escape("00000000  68 65 6c 6c 6f 0a                                 |hello.|") + "$")
    msg = b"The quick brown fox jumps\x00\x01\xff over"
    b.sendall(msg)
    assert recv_exact(a, len(msg)) == msg
    sj.wait_stderr(r"\bB -> A \(pair 1, %d bytes\):$" % len(msg))
    for line in hexdump_lines(msg):
        sj.wait_stderr(re.escape(line) + "$")
    # No ascii-mode lines in hex mode.
    assert not sj.stderr_matches(r"\(pair 1, \d+ bytes\): \S"), sj.stderr_text()


def test_no_traffic_log_by_default(sockjoin, sockets):
    sj = sockjoin("-v", *LL)
    a, b = open_pair(sj, sockets)
    a.sendall(b"secret")
    assert recv_exact(b, 6) == b"secret"
    close_pair(a, b)
    sj.wait_stderr(r"pair 1 closed")
    assert "secret" not in sj.stderr_text()
    assert not sj.stderr_matches(r"A -> B \(pair")


# --------------------------------------------------------------------------
# --max-pairs
# --------------------------------------------------------------------------

def test_max_pairs_1(sockjoin, sockets):
    sj = sockjoin("-v", "--max-pairs", "1", *LL)
    a1, b1 = open_pair(sj, sockets)
    sj.wait_stderr(r"pair 1 formed")
    # The second pair's sockets connect (kernel backlog) but are not paired.
    a2 = sockets(connect_tcp(sj.addr("A")))
    b2 = sockets(connect_tcp(sj.addr("B")))
    b2.sendall(b"for a2")
    a2.sendall(b"for b2")
    assert_no_data(a2, 1.5)
    assert_no_data(b2, 0.2)
    assert not sj.stderr_matches(r"pair 2 formed"), sj.stderr_text()
    # Pair 1 still works.
    b1.sendall(b"p1")
    assert recv_exact(a1, 2) == b"p1"
    # Closing pair 1 lets pair 2 form.
    close_pair(a1, b1)
    sj.wait_stderr(r"pair 1 closed")
    assert recv_exact(a2, 6) == b"for a2"
    assert recv_exact(b2, 6) == b"for b2"
    sj.wait_stderr(r"pair 2 formed")
