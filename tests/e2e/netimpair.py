"""A bad network in user space: loss, delay, jitter, reordering, duplication
and a blackhole, between this network namespace and one the test makes.

This kernel has no qdiscs to speak of (no netem) and no nftables, but it has
TUN devices and network namespaces. So the link is two TUN devices, one here
(ROOT_IP) and one moved into the namespace (NS_IP), each with a
point-to-point route to the other's address; a thread reads the IP packets
the kernel sends into one device and writes them into the other, after
whatever impairment is set for that direction:

    root ns  10.214.N.1 --[tun A]--> forwarder --[tun B]--> 10.214.N.2  ns
                        <----------- (each direction impaired on its own)

Impairment is drawn from a seeded random.Random (the seed is printed, and
NETIMPAIR_SEED sets it) so a failing run can be looked at again; timing
still varies from run to run. Delayed packets wait in a heap keyed by their
release time; the forwarder waits in select() until the next release or the
next packet. Counters say what was done, so a test can check that the
impairment acted at all.

The fixture `impaired_link` yields a Link; a test module imports it.
"""

import contextlib
import dataclasses
import fcntl
import heapq
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import threading
import time

import pytest

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
READ_BATCH = 64  # packets read from one device before looking at the other
HOLD_MAX = 0.05  # a packet held back for reordering waits no longer than this

# The namespace's backend: echoes every connection until EOF, then half-closes.
NS_ECHO = r"""
import socket, sys, threading
def echo(c):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    c.close()
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""


@dataclasses.dataclass(frozen=True)
class Impairment:
    """What happens to the packets of one direction."""

    loss: float = 0.0  # probability that a packet is dropped
    delay: float = 0.0  # seconds every packet waits
    jitter: float = 0.0  # plus up to this many seconds (uniform): reorders
    reorder: float = 0.0  # probability that a packet is held back behind the next
    duplicate: float = 0.0  # probability that a packet is delivered twice
    blackhole: bool = False  # drop everything, say nothing


class Direction:
    """One way through the link: its impairment, counters and held packet."""

    def __init__(self, name, src, dst):
        self.name, self.src, self.dst = name, src, dst
        self.imp = Impairment()
        self.held = None  # (packet, seq, deadline): waits for the next packet
        self.seq = 0  # packets that arrived
        self.max_sent = -1  # highest seq delivered so far
        # packets: read from src; forwarded: written to dst (copies count);
        # dropped: lost at random; blackholed: dropped by the blackhole;
        # duplicated: extra copies; held: held back behind the next packet;
        # reordered: delivered after a packet that arrived later (held back
        # or overtaken through jitter).
        self.counts = dict.fromkeys(("packets", "forwarded", "dropped", "blackholed",
                                     "duplicated", "held", "reordered"), 0)


class Link:
    """The two TUN devices, the namespace and the forwarder thread."""

    def __init__(self, seed=None):
        pid = os.getpid()
        self.tag = "sji%d" % pid
        self.ns = self.tag
        net = free_net(10 + pid % 200)  # 10.214.NET.1 and .2, private to this link
        self.root_ip, self.ns_ip = "10.214.%d.1" % net, "10.214.%d.2" % net
        self.root_dev, self.ns_dev = self.tag + "a", self.tag + "b"
        self.seed = seed if seed is not None else random.randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.exec_prefix = ["ip", "netns", "exec", self.ns]
        self._fds = []
        self._procs = []
        self._heap = []  # (release time, order, Direction, seq, packet)
        self._order = 0
        self._lock = threading.Lock()
        self._stop = False
        self._heal_at = None
        self._healed = threading.Event()
        self._thread = None
        self._error = None  # what stopped the forwarder, if anything did
        self._wake_r, self._wake_w = os.pipe()

    # -- setting up and tearing down ----------------------------------------
    def open(self):
        self._fds.append(open_tun(self.root_dev))
        self._fds.append(open_tun(self.ns_dev))
        a, b = self._fds
        self.out = Direction("out", a, b)  # root -> namespace
        self.back = Direction("back", b, a)  # namespace -> root
        ip("netns", "add", self.ns)
        # The device keeps its descriptor when it moves to the namespace.
        ip("link", "set", self.ns_dev, "netns", self.ns)
        ip("addr", "add", self.root_ip, "peer", self.ns_ip, "dev", self.root_dev)
        ip("link", "set", self.root_dev, "up")
        ip("-n", self.ns, "addr", "add", self.ns_ip, "peer", self.root_ip, "dev", self.ns_dev)
        ip("-n", self.ns, "link", "set", self.ns_dev, "up")
        ip("-n", self.ns, "link", "set", "lo", "up")
        self._thread = threading.Thread(target=self._run, name="netimpair", daemon=True)
        self._thread.start()
        print("netimpair: %s <-> %s (namespace %s), seed %d"
              % (self.root_ip, self.ns_ip, self.ns, self.seed))
        return self

    def close(self):
        for p in self._procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(10)
        if self._thread is not None:
            self._stop = True
            os.write(self._wake_w, b"x")
            self._thread.join(10)
            assert not self._thread.is_alive(), "netimpair forwarder did not stop"
            assert self._error is None, "netimpair forwarder failed: %r" % self._error
        for fd in self._fds + [self._wake_r, self._wake_w]:
            os.close(fd)
        self._fds = []
        ip("netns", "del", self.ns, check=False)
        # A TUN device goes with its last descriptor.
        for dev in (self.root_dev,):
            if ip("link", "show", dev, check=False).returncode == 0:
                ip("link", "del", dev, check=False)
        print("netimpair: counters %s" % self.counters())

    # -- what the tests call --------------------------------------------------
    def set(self, direction="both", **changes):
        """Changes the impairment of 'out' (root -> namespace), 'back' or
        'both' directions; fields not named keep their values."""
        for d in self._directions(direction):
            d.imp = dataclasses.replace(d.imp, **changes)
        os.write(self._wake_w, b"x")

    def blackhole(self, on=True, direction="both"):
        self._heal_at = None
        self.set(direction, blackhole=on)

    def blackhole_for(self, seconds):
        """Both directions go dark now and come back `seconds` later (the
        forwarder heals them: wait for that with wait_healed())."""
        self._healed.clear()
        self.set("both", blackhole=True)
        self._heal_at = time.monotonic() + seconds
        os.write(self._wake_w, b"x")

    def wait_healed(self, timeout):
        assert self._healed.wait(timeout), "the link did not heal within %.1fs" % timeout

    def counters(self, direction="both"):
        """Counters of one direction, or their sums for 'both'."""
        with self._lock:
            total = {}
            for d in self._directions(direction):
                for k, v in d.counts.items():
                    total[k] = total.get(k, 0) + v
            return total

    def ns_echo_server(self, host=None):
        """Starts NS_ECHO in the namespace on host (default NS_IP), port 0;
        returns 'HOST:PORT'. Killed at teardown."""
        host = host or self.ns_ip
        p = subprocess.Popen(self.exec_prefix + [sys.executable, "-c", NS_ECHO, host],
                             stdout=subprocess.PIPE, text=True)
        self._procs.append(p)
        assert select.select([p.stdout], [], [], 30)[0], "namespace echo server printed nothing"
        line = p.stdout.readline()
        assert line.strip().isdigit(), "namespace echo server printed %r" % line
        return "%s:%d" % (host, int(line))

    def _directions(self, direction):
        return {"out": [self.out], "back": [self.back], "both": [self.out, self.back]}[direction]

    # -- the forwarder --------------------------------------------------------
    def _run(self):
        try:
            self._forward()
        except BaseException as e:  # noqa: BLE001 - reported by close()
            self._error = e
            raise

    def _forward(self):
        while not self._stop:
            r, _, _ = select.select(self._fds + [self._wake_r], [], [], self._timeout())
            now = time.monotonic()
            if self._wake_r in r:
                os.read(self._wake_r, 4096)
            self._heal(now)
            for d in (self.out, self.back):
                if d.src in r:
                    self._read(d, now)
            self._release(time.monotonic())

    def _timeout(self):
        times = [self._heap[0][0]] if self._heap else []
        times += [d.held[2] for d in (self.out, self.back) if d.held]
        if self._heal_at is not None:
            times.append(self._heal_at)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _heal(self, now):
        if self._heal_at is not None and now >= self._heal_at:
            self._heal_at = None
            self.set("both", blackhole=False)
            self._healed.set()

    def _read(self, d, now):
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(d.src, 65536)
            except BlockingIOError:
                return
            with self._lock:
                self._arrive(d, pkt, now)

    def _arrive(self, d, pkt, now):
        imp, seq = d.imp, d.seq
        d.seq += 1
        d.counts["packets"] += 1
        if imp.blackhole:
            d.counts["blackholed"] += 1
            return
        if self.rng.random() < imp.loss:
            d.counts["dropped"] += 1
            return
        if d.held is None and self.rng.random() < imp.reorder:
            d.counts["held"] += 1
            d.held = (pkt, seq, now + imp.delay + HOLD_MAX)
            return
        copies = 2 if self.rng.random() < imp.duplicate else 1
        d.counts["duplicated"] += copies - 1
        for _ in range(copies):
            at = now + imp.delay + self.rng.random() * imp.jitter
            self._push(at, d, seq, pkt)
        if d.held is not None:  # the held packet goes right behind this one
            held, d.held = d.held, None
            self._push(at, d, held[1], held[0])

    def _push(self, at, d, seq, pkt):
        self._order += 1
        heapq.heappush(self._heap, (at, self._order, d, seq, pkt))

    def _release(self, now):
        with self._lock:
            for d in (self.out, self.back):
                if d.held and d.held[2] <= now:  # no packet came to pass it
                    self._push(now, d, d.held[1], d.held[0])
                    d.held = None
            while self._heap and self._heap[0][0] <= now:
                _, _, d, seq, pkt = heapq.heappop(self._heap)
                self._deliver(d, seq, pkt)

    def _deliver(self, d, seq, pkt):
        if d.imp.blackhole:  # what was on the wire when the link went dark
            d.counts["blackholed"] += 1
            return
        if seq < d.max_sent:
            d.counts["reordered"] += 1
        d.max_sent = max(d.max_sent, seq)
        d.counts["forwarded"] += 1
        with contextlib.suppress(BlockingIOError):  # a full device queue drops, like a NIC
            os.write(d.dst, pkt)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def free_net(first):
    """The first N from first (mod 200, from 10) with no 10.214.N.x address
    here yet, so that two runs at once do not share addresses."""
    used = ip("-4", "-o", "addr", "show").stdout
    for i in range(200):
        net = 10 + (first - 10 + i) % 200
        if " 10.214.%d." % net not in used:
            return net
    raise AssertionError("no free 10.214.N.0/30 left")


def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def why_not():
    """Why an impaired link cannot be made here, or None."""
    if os.geteuid() != 0:
        return "an impaired link needs root"
    if not shutil.which("ip"):
        return "an impaired link needs iproute2's ip"
    try:
        os.close(open_tun("sjiprobe%d" % (os.getpid() % 10000)))
    except OSError as e:
        return "no TUN devices here: %s" % e
    probe = "sjiprobe%d" % os.getpid()
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return "cannot make a network namespace here: %s" % r.stderr.strip()
    ip("netns", "del", probe, check=False)
    return None


@pytest.fixture
def impaired_link():
    """A Link, up, with no impairment yet; torn down (thread, devices,
    namespace, processes started in it) at the end of the test."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    seed = os.environ.get("NETIMPAIR_SEED")
    link = Link(int(seed) if seed else None)
    try:
        yield link.open()
    finally:
        link.close()
