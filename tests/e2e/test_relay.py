"""`sockjoin relay`: the named message relay of the TCP Relay seed, driven by
a client written from the seed's description (relayclient.py).

Timeouts are set short through options so that the tests stay quick; the
waits that check them have generous deadlines (ASan builds are slow)."""

import json
import os
import random
import re
import socket
import struct
import threading
import time

import pytest

from conftest import (DEADLINE, Worker, assert_no_data, parse_hostport, run_sockjoin, sha256,
                      wait_for)
from relayclient import RelayClient

SANITIZED = bool(os.environ.get("SOCKJOIN_SANITIZED"))
MIB = 1 << 20


@pytest.fixture
def relay(sockjoin):
    """Factory: relay(*options) -> (process, (host, port)). The relay
    listens on 127.0.0.1:0; its clients are made with client()."""

    def start(*options, listen="127.0.0.1:0"):
        sj = sockjoin("relay", "--listen", listen, *options, wait=False)
        line = sj.read_stdout_line()
        m = re.fullmatch(r"listening relay (\S+)", line)
        assert m, "unexpected stdout line %r" % line
        return sj, parse_hostport(m.group(1))

    return start


@pytest.fixture
def client():
    """Factory: client(addr, name=None, **kw) -> RelayClient, closed at
    teardown."""
    made = []

    def make(addr, name=None, **kw):
        c = RelayClient(addr, name, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def registered(sj, name, count=1):
    """Waits for the verbose log of name's registration (count times)."""
    sj.wait_stderr(r"'%s' \(127\.0\.0\.1:\d+\): registered$" % re.escape(name), count=count)


def roundtrip(c):
    """Proves c registered, without --verbose: a message to itself comes back."""
    c.send(c.name, b"sync")
    assert c.recv_message() == (c.name, b"sync")


def vm_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (key, pid))


# --------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------

def test_delivery_between_three_clients(relay, client):
    sj, addr = relay("-v")
    names = ["device_a", "device_b", "device_c"]
    cs = {n: client(addr, n) for n in names}
    for n in names:
        registered(sj, n)
    for n in names:
        for other in names:
            if other != n:
                for i in range(3):
                    cs[n].send(other, ("%s->%s #%d" % (n, other, i)).encode())
    for n in names:
        got = [cs[n].recv_message() for _ in range(6)]
        for other in names:
            if other == n:
                continue
            from_other = [p for s, p in got if s == other.encode()]
            # Messages from one sender arrive whole and in order.
            assert from_other == [("%s->%s #%d" % (other, n, i)).encode() for i in range(3)], got
        assert_no_data(cs[n].sock, 0.2)


def test_seed_example_hello(relay, client):
    """The README's example: device_b sends 'hello' to device_a."""
    sj, addr = relay("-v")
    a = client(addr, "device_a")
    registered(sj, "device_a")
    b = client(addr, "device_b")
    b.send_raw(b"device_a|5|hello")
    assert a.recv_message() == (b"device_b", b"hello")


def test_payload_with_bars_and_binary(relay, client):
    sj, addr = relay("-v")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    payload = bytes(range(256)) + b"|x|3|" + b"\0" * 10
    a.send("b", payload)
    assert b.recv_message() == (b"a", payload)


def test_send_to_self_is_delivered_keepalive_is_not(relay, client):
    sj, addr = relay("-v")
    a = client(addr, "a")
    registered(sj, "a")
    a.keepalive()
    a.send("a", b"to myself")
    assert a.recv_message() == (b"a", b"to myself")
    assert_no_data(a.sock, 0.3)


def test_zero_length_messages(relay, client):
    sj, addr = relay("-v", "--stats")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    a.send_raw(b"b|0|b|0|b|3|abcb|0|")
    assert [b.recv_message() for _ in range(4)] == [(b"a", b""), (b"a", b""), (b"a", b"abc"),
                                                   (b"a", b"")]
    b.send_raw(b"a|0|")
    assert a.recv_message() == (b"b", b"")


def test_deliver_raw(relay, client):
    sj, addr = relay("-v", "--deliver", "raw")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    a.send("b", b"hello")
    a.send("b", b"")
    a.send("b", b"world")
    assert b.recv_bytes(10) == b"helloworld"
    assert_no_data(b.sock, 0.3)


def test_unknown_destination_is_dropped_sender_stays(relay, client):
    sj, addr = relay("-v")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    # The dropped payload holds what looks like frames: it must be skipped
    # as payload, not parsed.
    a.send("nobody", b"b|4|evil" * 1000)
    a.send("b", b"after")
    assert b.recv_message() == (b"a", b"after")
    sj.wait_stderr(r"'a' \(127\.0\.0\.1:\d+\): dropped a 8000-byte message to unknown name "
                   r"'nobody'$")
    a.send("b", b"still connected")
    assert b.recv_message() == (b"a", b"still connected")


def test_large_message_to_unknown_name_is_read_and_discarded(relay, client):
    sj, addr = relay()
    a, b = client(addr, "a"), client(addr, "b")
    roundtrip(b)
    big = random.randbytes(8 * MIB)
    w = Worker(a.send, "nobody", big)
    w.start()
    w.join_result()
    a.send("b", b"next")
    assert b.recv_message() == (b"a", b"next")


# --------------------------------------------------------------------------
# Registration and names
# --------------------------------------------------------------------------

def test_name_clash_closes_the_newcomer(relay, client):
    sj, addr = relay("-v")
    first = client(addr, "dup")
    registered(sj, "dup")
    second = client(addr, "dup")
    assert second.expect_closed() == b""
    sj.wait_stderr(r"'dup' \(127\.0\.0\.1:\d+\): name already registered; closing$")
    # The first holder keeps its name.
    other = client(addr, "other")
    other.send("dup", b"for the first")
    assert first.recv_message() == (b"other", b"for the first")


def test_name_freed_on_close_and_registered_again(relay, client):
    sj, addr = relay("-v")
    b = client(addr, "b")
    a = client(addr, "a")
    registered(sj, "a")
    a.close()
    sj.wait_stderr(r"'a' \(127\.0\.0\.1:\d+\): closed by peer$")
    a2 = client(addr, "a")
    registered(sj, "a", count=2)
    b.send("a", b"welcome back")
    assert a2.recv_message() == (b"b", b"welcome back")


def test_name_freed_after_malformed_close(relay, client):
    sj, addr = relay("-v")
    b = client(addr, "b")
    a = client(addr, "a")
    registered(sj, "a")
    a.send_raw(b"b|x|")
    a.expect_closed()
    a2 = client(addr, "a")
    registered(sj, "a", count=2)
    b.send("a", b"again")
    assert a2.recv_message() == (b"b", b"again")


def test_longest_name(relay, client):
    sj, addr = relay("-v")
    name = "n" * 255
    a = client(addr, name)
    b = client(addr, "b")
    registered(sj, name)
    b.send(name, b"long")
    assert a.recv_message() == (b"b", b"long")
    a.send("b", b"back")
    assert b.recv_message() == (name.encode(), b"back")


def test_registration_timeout(relay, client):
    sj, addr = relay("-v", "--register-timeout", "0.5")
    t0 = time.monotonic()
    silent = client(addr)
    partial = client(addr)
    partial.send_raw(b"half_a_na")  # no '|': registration never finishes
    assert silent.expect_closed() == b""
    assert partial.expect_closed() == b""
    assert time.monotonic() - t0 >= 0.45
    sj.wait_stderr(r"127\.0\.0\.1:\d+: no registration within 0\.5s$", count=2)
    # Registration and a message in one segment is in time.
    quick = client(addr)
    quick.send_raw(b"quick|quick|2|ok")
    assert quick.recv_message() == (b"quick", b"ok")


def test_idle_timeout_and_keepalive(relay, client):
    sj, addr = relay("-v", "--idle-timeout", "1.5")
    silent = client(addr, "silent")
    keeper = client(addr, "keeper")
    dribbler = client(addr, "dribbler")
    registered(sj, "keeper")
    registered(sj, "dribbler")
    t0 = time.monotonic()
    frame = RelayClient.frame("keeper", b"drip")
    sent = 0
    # For over 2 idle periods: keeper sends keep-alives, dribbler sends one
    # frame a byte at a time (any byte resets the idle clock), silent sends
    # nothing. The sleeps pace the senders; they synchronise nothing.
    while time.monotonic() - t0 < 3.5:
        keeper.keepalive()
        if sent < len(frame):
            dribbler.send_raw(frame[sent:sent + 1])
            sent += 1
        time.sleep(0.25)
    dribbler.send_raw(frame[sent:])
    assert silent.expect_closed() == b""
    sj.wait_stderr(r"'silent' \(127\.0\.0\.1:\d+\): idle for 1\.5s$")
    # Keep-alives are not delivered: the first frame keeper sees is the
    # dribbled message.
    assert keeper.recv_message() == (b"dribbler", b"drip")
    dribbler.send("keeper", b"still here")
    assert keeper.recv_message() == (b"dribbler", b"still here")


# --------------------------------------------------------------------------
# Malformed frames
# --------------------------------------------------------------------------

MALFORMED = [
    ("empty-name", b"|", "empty name"),
    ("long-name", b"n" * 256 + b"|", "name longer than 255 bytes"),
    ("empty-destination", b"a||5|hello", "empty destination"),
    ("long-destination", b"a|" + b"d" * 256 + b"|1|x", "destination longer than 255 bytes"),
    ("empty-length", b"a|b||hello", "empty length"),
    ("letters-in-length", b"a|b|5x|hello", "length is not decimal digits"),
    ("negative-length", b"a|b|-5|hello", "length is not decimal digits"),
    ("plus-sign", b"a|b|+5|hello", "length is not decimal digits"),
    ("space-in-length", b"a|b| 5|hello", "length is not decimal digits"),
    ("hex-length", b"a|b|0x5|hello", "length is not decimal digits"),
    ("over-limit", b"a|b|1001|", "length over the message limit"),
    ("huge-length", b"a|b|99999999999999999999999999|", "length over the message limit"),
]


@pytest.mark.parametrize("data,reason", [(d, r) for _, d, r in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed_frame_closes_that_client(relay, client, data, reason):
    sj, addr = relay("--max-message", "1000")
    b = client(addr, "b")
    roundtrip(b)
    bad = client(addr)
    bad.send_raw(data)
    bad.expect_closed()
    # Logged without --verbose: the reason is named.
    sj.wait_stderr(r"127\.0\.0\.1:\d+\)?: malformed frame: %s; closing$" % re.escape(reason))
    # The bystander heard nothing and the relay still works.
    assert_no_data(b.sock, 0.2)
    good = client(addr, "good")
    good.send("b", b"fine")
    assert b.recv_message() == (b"good", b"fine")


def test_messages_before_a_malformed_frame_are_delivered(relay, client):
    sj, addr = relay("-v")
    b = client(addr, "b")
    registered(sj, "b")
    a = client(addr)
    a.send_raw(b"a|b|2|hib|3|you|b|x|")
    assert a.expect_closed() == b""
    assert b.recv_message() == (b"a", b"hi")
    assert b.recv_message() == (b"a", b"you")


def test_default_message_limit_is_16_mib(relay, client):
    sj, addr = relay()
    bad = client(addr, "a")
    bad.send_raw(b"b|%d|" % (16 * MIB + 1))
    bad.expect_closed()
    sj.wait_stderr(r"malformed frame: length over the message limit; closing$")


# --------------------------------------------------------------------------
# Framing: split and coalesced
# --------------------------------------------------------------------------

def message_set(rng, n):
    out = []
    for i in range(n):
        size = rng.choice([0, 1, 5, 17, 200, 1000, 5000])
        payload = bytes(rng.choice(b"ab|0123456789\x00\xff") for _ in range(size))
        out.append(payload)
    return out


def test_coalesced_frames(relay, client):
    sj, addr = relay("-v")
    b = client(addr, "b")
    registered(sj, "b")
    msgs = message_set(random.Random(1), 300)
    # Registration and 300 messages in one write.
    a = client(addr)
    a.send_raw(b"a|" + b"".join(RelayClient.frame("b", m) for m in msgs))
    got = [b.recv_message() for _ in msgs]
    assert got == [(b"a", m) for m in msgs]


def test_split_frames(relay, client):
    sj, addr = relay("-v")
    b = client(addr, "b")
    registered(sj, "b")
    rng = random.Random(2)
    msgs = message_set(rng, 40)
    stream = b"a|" + b"".join(RelayClient.frame("b", m) for m in msgs)
    a = client(addr)
    pos = 0
    # Pieces of 1 to 7 bytes, each its own segment (TCP_NODELAY, paced).
    while pos < len(stream):
        n = rng.randint(1, 7)
        a.send_raw(stream[pos:pos + n])
        pos += n
        if rng.random() < 0.05:
            time.sleep(0.002)
    got = [b.recv_message() for _ in msgs]
    assert got == [(b"a", m) for m in msgs]


def test_every_split_point_of_a_short_exchange(relay, client):
    """The same two frames split at every single byte boundary."""
    sj, addr = relay("-v")
    b = client(addr, "b")
    registered(sj, "b")
    for k in range(1, 20):
        name = "s%d" % k
        stream = name.encode() + b"|b|3|abcb|0|"
        s = client(addr)
        s.send_raw(stream[:k])
        # Paced, so that the relay most likely reads the two parts apart;
        # the outcome must be the same either way.
        time.sleep(0.01)
        s.send_raw(stream[k:])
        assert b.recv_message() == (name.encode(), b"abc")
        assert b.recv_message() == (name.encode(), b"")
        s.close()


# --------------------------------------------------------------------------
# Big messages, slow receivers, backpressure, stalls
# --------------------------------------------------------------------------

def test_16_mib_message_by_hash(relay, client):
    sj, addr = relay("-v")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    rss_before = vm_kib(sj.pid, "VmRSS")
    big = random.randbytes(16 * MIB)
    w = Worker(a.send, "b", big)
    w.start()
    sender, n, digest = b.recv_message_hash(timeout=DEADLINE * 2)
    w.join_result()
    assert (sender, n, digest) == (b"a", len(big), sha256(big))
    # The message went through in pieces: the relay never held it whole.
    peak = vm_kib(sj.pid, "VmHWM")
    if not SANITIZED:
        assert peak - rss_before < 6 * 1024, (rss_before, peak)


def test_slow_receiver_fast_sender_bounded_and_lossless(relay, client):
    sj, addr = relay("-v", "--buffer", "128k")
    slow = client(addr, "slow", rcvbuf=32 * 1024)
    fast_sender = client(addr, "sender")
    registered(sj, "slow")
    registered(sj, "sender")
    rss_before = vm_kib(sj.pid, "VmRSS")
    count, size = 160, 200 * 1024  # 32 MiB in 200 KiB messages
    rng = random.Random(3)
    msgs = [i.to_bytes(4, "big") + rng.randbytes(size - 4) for i in range(count)]

    def send_all():
        for m in msgs:
            fast_sender.send("slow", m)

    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(vm_kib(sj.pid, "VmRSS"))
            stop.wait(0.05)

    w = Worker(send_all)
    s = threading.Thread(target=sample, daemon=True)
    w.start()
    s.start()
    # The receiver is slow: small reads, paced (not synchronisation).
    for i in range(count):
        sender, n = slow.recv_header(timeout=DEADLINE * 2)
        assert (sender, n) == (b"sender", size)
        got = bytearray()
        while len(got) < n:
            got += slow.recv_bytes(min(16 * 1024, n - len(got)), timeout=DEADLINE * 2)
            if i < count // 2:
                time.sleep(0.001)
        assert bytes(got) == msgs[i], "message %d corrupted" % i
    w.join_result(DEADLINE * 2)
    stop.set()
    s.join()
    assert samples
    if not SANITIZED:
        # 32 MiB went through a receiver far slower than its sender: the
        # relay's memory stayed within a few MiB of where it started.
        assert max(samples) - rss_before < 6 * 1024, (rss_before, max(samples))


def test_many_senders_to_one_receiver(relay, client):
    """20 senders at once into one receiver with a small queue: they are held
    back and woken again and again; every message arrives whole, each
    sender's in order."""
    sj, addr = relay("-v", "--buffer", "64k")
    hub = client(addr, "hub", rcvbuf=64 * 1024)
    registered(sj, "hub")
    senders = [client(addr, "s%02d" % i) for i in range(20)]
    for c in senders:
        roundtrip(c)
    per, size = 40, 20000

    def payload(i, k):
        return bytes([65 + i]) * 4 + k.to_bytes(4, "big") + bytes([97 + (i + k) % 26]) * (size - 8)

    def send_all(i):
        for k in range(per):
            senders[i].send("hub", payload(i, k))

    workers = [Worker(send_all, i) for i in range(20)]
    for w in workers:
        w.start()
    next_k = {}
    for _ in range(20 * per):
        sender, data = hub.recv_message(timeout=DEADLINE * 2)
        i = int(sender[1:])
        k = next_k.get(i, 0)
        assert data == payload(i, k), "message %d of %r wrong or out of order" % (k, sender)
        next_k[i] = k + 1
    for w in workers:
        w.join_result()
    assert next_k == {i: per for i in range(20)}


def test_receiver_leaving_mid_message_leaves_sender_in_step(relay, client):
    sj, addr = relay("-v", "--buffer", "64k")
    a, d, e = client(addr, "a"), client(addr, "d"), client(addr, "e")
    for n in ("a", "d", "e"):
        registered(sj, n)
    w = Worker(a.send, "d", b"q" * (8 * MIB))
    w.start()
    assert d.recv_header() == (b"a", 8 * MIB)
    d.recv_bytes(1000)
    d.close()
    sj.wait_stderr(r"'d' \(127\.0\.0\.1:\d+\): (closed by peer|(read|write) failed: .*)$")
    # The rest of the 8 MiB is read and dropped; what follows is a new frame.
    w.join_result()
    a.send("e", b"next")
    assert e.recv_message() == (a.name, b"next")


def test_big_messages_both_ways_at_once(relay, client):
    sj, addr = relay("-v", "--buffer", "64k")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    to_b, to_a = random.randbytes(8 * MIB), random.randbytes(8 * MIB)
    wa, wb = Worker(a.send, "b", to_b), Worker(b.send, "a", to_a)
    ra, rb = Worker(a.recv_message_hash, DEADLINE * 2), Worker(b.recv_message_hash, DEADLINE * 2)
    for w in (wa, wb, ra, rb):
        w.start()
    assert ra.join_result(DEADLINE * 2) == (b"b", len(to_a), sha256(to_a))
    assert rb.join_result(DEADLINE * 2) == (b"a", len(to_b), sha256(to_b))
    wa.join_result()
    wb.join_result()


def test_stuck_receiver_holds_back_only_its_senders(relay, client):
    sj, addr = relay("-v", "--buffer", "64k")
    stuck = client(addr, "stuck", rcvbuf=4096)
    held = client(addr, "held", sndbuf=4096)
    other, fast = client(addr, "other"), client(addr, "fast")
    for n in ("stuck", "held", "other", "fast"):
        registered(sj, n)
    w = Worker(held.send, "stuck", b"x" * (16 * MIB))
    w.start()
    # While held's sends pile up behind the stuck receiver, other pairs flow.
    for i in range(20):
        other.send("fast", b"ping %d" % i)
        assert fast.recv_message() == (b"other", b"ping %d" % i)
    assert w.is_alive(), "16 MiB went into a receiver that reads nothing: no backpressure"
    # Once the receiver reads, everything arrives.
    sender, n, digest = stuck.recv_message_hash(timeout=DEADLINE * 2)
    assert (sender, n, digest) == (b"held", 16 * MIB, sha256(b"x" * (16 * MIB)))
    w.join_result()


def test_stall_timeout_disconnects_stuck_receiver(relay, client):
    sj, addr = relay("-v", "--buffer", "64k", "--stall-timeout", "1")
    stuck = client(addr, "stuck", rcvbuf=4096)
    sender, c = client(addr, "sender"), client(addr, "c")
    for n in ("stuck", "sender", "c"):
        registered(sj, n)
    t0 = time.monotonic()
    w = Worker(sender.send, "stuck", b"y" * (4 * MIB))
    w.start()
    sj.wait_stderr(r"'stuck' \(127\.0\.0\.1:\d+\): stalled: nothing written for 1s with \d+ bytes "
                   r"queued$")
    assert time.monotonic() - t0 >= 0.9
    # The rest of that message is read and dropped: the sender is free, in
    # step, and still connected.
    w.join_result()
    sender.send("c", b"after the stall")
    assert c.recv_message() == (b"sender", b"after the stall")
    # The name is free again.
    again = client(addr, "stuck")
    registered(sj, "stuck", count=2)
    sender.send("stuck", b"hello again")
    assert again.recv_message() == (b"sender", b"hello again")
    stuck.expect_closed()


def test_message_cut_short_by_sender_closes_receiver(relay, client):
    sj, addr = relay("-v")
    b = client(addr, "b")
    a = client(addr, "a")
    registered(sj, "a")
    registered(sj, "b")
    a.send_raw(b"b|1000|0123456789")
    # The ten bytes are delivered before a goes away.
    assert b.recv_header() == (b"a", 1000)
    assert b.recv_bytes(10) == b"0123456789"
    a.close()
    # The frame cannot be finished: b sees the end of the stream, not bytes
    # that would be taken for the rest of the payload.
    assert b.expect_closed() == b""
    sj.wait_stderr(r"'b' \(127\.0\.0\.1:\d+\): a message to it was cut short by its sender; "
                   r"closing$")


def test_garbage_from_many_clients(relay, client):
    """Random bytes from 30 clients at once (some after a valid registration
    and frames, some split, some abrupt resets): the relay survives, frees
    what they held, and still delivers between well-behaved clients."""
    sj, addr = relay("--max-message", "4096", "--register-timeout", "2")
    b = client(addr, "b")
    roundtrip(b)
    rng = random.Random(4)

    def noisy(i):
        c = RelayClient(addr)
        try:
            prefix = b""
            if i % 3 == 0:
                prefix = b"g%d|b|3|abc" % i
            data = prefix + rng.randbytes(rng.randint(1, 20000))
            for k in range(0, len(data), 997):
                c.send_raw(data[k:k + 997])
            if i % 5 == 0:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # closed by the relay mid-send: expected for garbage
        finally:
            c.close()

    workers = [Worker(noisy, i) for i in range(30)]
    for w in workers:
        w.start()
    for w in workers:
        w.join_result()
    # b may have received the noisy clients' valid "abc" messages; it gets
    # nothing malformed, and a message from a good client comes through.
    good = client(addr, "good")
    roundtrip(good)
    good.send("b", b"after the storm")
    while True:
        sender, payload = b.recv_message()
        if sender == b"good":
            assert payload == b"after the storm"
            break
        assert re.fullmatch(rb"g\d+", sender) and payload == b"abc", (sender, payload)
    assert sj.alive()


# --------------------------------------------------------------------------
# Limits, stats, lifecycle
# --------------------------------------------------------------------------

def test_max_clients(relay, client):
    sj, addr = relay("-v", "--max-clients", "2")
    c1, c2 = client(addr, "c1"), client(addr, "c2")
    registered(sj, "c1")
    registered(sj, "c2")
    c3 = client(addr, "c3")
    assert c3.expect_closed() == b""
    sj.wait_stderr(r"127\.0\.0\.1:\d+: refused: 2 clients already \(--max-clients\)$")
    c1.close()
    sj.wait_stderr(r"'c1' \(127\.0\.0\.1:\d+\): closed by peer$")
    c4 = client(addr, "c4")
    registered(sj, "c4")
    c2.send("c4", b"in")
    assert c4.recv_message() == (b"c2", b"in")


def test_stats_line_at_exit(relay, client):
    sj, addr = relay("-v", "--stats")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    a.send("b", b"12345")
    a.send("b", b"")
    a.send("nobody", b"x")
    a.keepalive()
    assert b.recv_message() == (b"a", b"12345")
    assert b.recv_message() == (b"a", b"")
    dup = client(addr, "a")
    dup.expect_closed()
    bad = client(addr)
    bad.send_raw(b"|")
    bad.expect_closed()
    a.send("a", b"")  # a keep-alive too; and a round trip that orders the above
    a.send("b", b"end")
    assert b.recv_message() == (b"a", b"end")
    assert sj.stop() == 0
    stats = json.loads(sj.stderr_lines()[-1])
    assert stats == {"clients": 4, "registered": 2, "messages": 3, "bytes": 8, "keepalives": 2,
                     "dropped": 1, "refused": 0, "clashes": 1, "malformed": 1, "timeouts": 0,
                     "stalled": 0}


def test_sigint_delivers_what_is_queued_and_exits(relay, client):
    sj, addr = relay("-v", "--stats")
    a, b = client(addr, "a"), client(addr, "b")
    registered(sj, "a")
    registered(sj, "b")
    a.send("b", b"before the signal")
    assert b.recv_message() == (b"a", b"before the signal")
    sj.signal(2)
    assert sj.wait_exit() == 0
    # Both clients see the end of the stream, and the stats come last.
    assert a.expect_closed() == b""
    assert b.expect_closed() == b""
    assert json.loads(sj.stderr_lines()[-1])["messages"] == 1


def test_sigterm_with_a_stuck_receiver_exits_cleanly(relay, client):
    sj, addr = relay("-v", "--buffer", "64k")
    stuck = client(addr, "stuck", rcvbuf=4096)
    sender = client(addr, "sender", sndbuf=4096)
    registered(sj, "stuck")
    registered(sj, "sender")
    w = Worker(sender.send, "stuck", b"z" * (4 * MIB))
    w.start()
    sj.wait_stderr(r"'stuck' \(127\.0\.0\.1:\d+\): registered$")
    # Wait until the relay is holding the sender back.
    wait_for(lambda: stuck.sock.recv(1, socket.MSG_PEEK), what="data for the stuck receiver")
    t0 = time.monotonic()
    sj.signal(15)
    rc = sj.wait_exit()
    assert rc == 0
    # Queued output may take the drain time (2 s) to be given up on.
    assert time.monotonic() - t0 < DEADLINE
    # The sender's write ends either way: cut off, or taken by the kernel.
    w.join(DEADLINE)
    assert not w.is_alive()


def test_ipv6_listen(relay, client):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    sj, addr = relay("-v", listen="[::1]:0")
    assert addr[0] == "::1"
    a, b = client(addr, "a"), client(addr, "b")
    sj.wait_stderr(r"'b' \(\[::1\]:\d+\): registered$")
    a.send("b", b"over v6")
    assert b.recv_message() == (b"a", b"over v6")


def test_listen_port_only_is_all_interfaces(relay):
    sj, addr = relay(listen="0")
    assert addr[0] == "0.0.0.0" and addr[1] > 0


# --------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------

BAD_USAGE = [
    (["--listen", "99999"], "sockjoin relay: bad --listen '99999': port out of range"),
    (["--listen", "abc"], "sockjoin relay: bad --listen 'abc': "),
    (["--listen", "[::1:80"], "sockjoin relay: bad --listen '[::1:80': missing ']'"),
    (["--listen", "0,tls=1"], "sockjoin relay: bad --listen '0,tls=1': expected [HOST:]PORT"),
    (["--listen", "listen:0"], "sockjoin relay: bad --listen 'listen:0': expected [HOST:]PORT"),
    (["--listen"], "sockjoin relay: --listen needs a value"),
    (["--register-timeout", "0"], "sockjoin relay: bad --register-timeout '0': expected seconds > 0"),
    (["--idle-timeout", "-1"], "sockjoin relay: bad --idle-timeout '-1': expected seconds > 0"),
    (["--idle-timeout=abc"], "sockjoin relay: bad --idle-timeout 'abc': expected seconds > 0"),
    (["--stall-timeout", "1e3"], "sockjoin relay: bad --stall-timeout '1e3': expected seconds > 0"),
    (["--max-message", "2g"],
     "sockjoin relay: bad --max-message '2g': expected bytes from 0 to 1G (k, m, g suffixes allowed)"),
    (["--max-message", "-1"], "sockjoin relay: bad --max-message '-1': expected bytes from 0 to 1G"),
    (["--max-clients", "0"],
     "sockjoin relay: bad --max-clients '0': expected a whole number from 1 to 1000000"),
    (["--max-clients", "1.5"], "sockjoin relay: bad --max-clients '1.5': expected a whole number"),
    (["--buffer", "0"],
     "sockjoin relay: bad --buffer '0': expected bytes from 1 to 1G (k, m, g suffixes allowed)"),
    (["--buffer", "12q"], "sockjoin relay: bad --buffer '12q': expected bytes from 1 to 1G"),
    (["--deliver", "json"], "sockjoin relay: bad --deliver 'json': expected framed or raw"),
    (["--bogus"], "sockjoin relay: unknown option '--bogus'"),
    (["--bogus=1"], "sockjoin relay: unknown option '--bogus'"),
    (["extra"], "sockjoin relay: unexpected argument 'extra' (see --help)"),
]


@pytest.mark.parametrize("argv,message", BAD_USAGE, ids=[" ".join(a) for a, _ in BAD_USAGE])
def test_bad_usage(argv, message):
    r = run_sockjoin(["relay"] + argv, timeout=15)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, "exit %s, stderr: %s" % (r.returncode, err)
    assert r.stdout == b""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err


def test_listen_address_in_use():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = run_sockjoin(["relay", "--listen", "127.0.0.1:%d" % port], timeout=15)
    finally:
        s.close()
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err == "sockjoin relay: cannot listen on 127.0.0.1:%d: address already in use\n" % port
    assert r.stdout == b""


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    r = run_sockjoin(["relay", flag], timeout=15)
    out = r.stdout.decode()
    assert r.returncode == 0 and r.stderr == b""
    assert out.startswith("usage: sockjoin relay")
    for word in ("--listen", "--register-timeout", "--idle-timeout", "--stall-timeout",
                 "--max-message", "--max-clients", "--buffer", "--deliver", "--verbose",
                 "--stats", "0.0.0.0:8080"):
        assert word in out, word
