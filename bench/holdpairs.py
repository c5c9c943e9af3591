#!/usr/bin/python3
"""Many concurrent connections through a relay, for the scale section of bench/run.

Two roles, each its own process (so each gets its own file-descriptor budget):

  holdpairs.py server
      Listens on 127.0.0.1 (port 0), prints "listening PORT", then accepts and
      holds every connection, echoing back whatever arrives.  Commands on
      stdin, one per line:
        count   -> "count ACCEPTED OPEN"
        quit    -> exits (so does end of stdin)

  holdpairs.py client --port P --n N
      Opens N connections to 127.0.0.1:P (at most --inflight connects pending
      at once), then prints "connected OK FAILED SECONDS".  Commands on stdin:
        sample K -> sends a unique message on K connections spread over all of
                    them and waits for each echo: "sample GOOD BAD"
        alive    -> "alive OPEN CLOSED" (closed = peer closed or reset)
        quit     -> closes everything and exits (so does end of stdin)

Standard library only.  Everything is bounded by deadlines, so a stuck relay
makes the caller see an error instead of a hang.
"""

import argparse
import errno
import os
import resource
import selectors
import socket
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class StdinLines:
    """Non-blocking line reader for stdin, driven by a selector."""

    def __init__(self):
        self.fd = sys.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.eof = False

    def read(self):
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not data:
            self.eof = True
            return []
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [l.decode().strip() for l in lines if l.strip()]


# --------------------------------------------------------------------------
# server
# --------------------------------------------------------------------------

def run_server(args):
    raise_nofile()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.host, args.port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    stdin = StdinLines()
    sel.register(stdin.fd, selectors.EVENT_READ, "stdin")
    say("listening %d" % lsock.getsockname()[1])

    accepted = 0
    conns = {}  # sock -> pending output bytes
    accept_errors = 0
    while True:
        for key, mask in sel.select(timeout=1.0):
            what = key.data
            if what == "listen":
                while True:
                    try:
                        c, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        accept_errors += 1
                        if e.errno in (errno.EMFILE, errno.ENFILE):
                            # Out of descriptors: stop accepting for a moment.
                            time.sleep(0.01)
                        break
                    c.setblocking(False)
                    accepted += 1
                    conns[c] = b""
                    sel.register(c, selectors.EVENT_READ, "conn")
            elif what == "stdin":
                for line in stdin.read():
                    if line == "count":
                        say("count %d %d" % (accepted, len(conns)))
                    elif line == "quit":
                        return 0
                if stdin.eof:
                    return 0
            else:
                c = key.fileobj
                if mask & selectors.EVENT_READ:
                    try:
                        data = c.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except OSError:
                        data = b""
                    if data == b"":
                        sel.unregister(c)
                        conns.pop(c, None)
                        c.close()
                        continue
                    if data:
                        conns[c] += data
                if conns.get(c):
                    try:
                        n = c.send(conns[c])
                        conns[c] = conns[c][n:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        sel.unregister(c)
                        conns.pop(c, None)
                        c.close()
                        continue
                    want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conns[c] else 0)
                    sel.modify(c, want, "conn")
                elif mask & selectors.EVENT_WRITE:
                    sel.modify(c, selectors.EVENT_READ, "conn")


# --------------------------------------------------------------------------
# client
# --------------------------------------------------------------------------

def connect_all(host, port, n, inflight, timeout):
    """Returns (connected sockets, failures, seconds)."""
    sel = selectors.DefaultSelector()
    done = []
    failed = 0
    pending = 0
    started = 0
    t0 = time.monotonic()
    deadline = t0 + timeout
    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and pending < inflight:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            started += 1
            err = s.connect_ex((host, port))
            if err in (0, errno.EINPROGRESS, errno.EAGAIN):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                failed += 1
                s.close()
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                failed += 1
                s.close()
            else:
                done.append(s)
    # Whatever is still pending at the deadline counts as failed.
    for key in list(sel.get_map().values()):
        failed += 1
        key.fileobj.close()
    failed += n - started
    sel.close()
    return done, failed, time.monotonic() - t0


def sample(socks, k, timeout):
    if not socks or k <= 0:
        return 0, k
    k = min(k, len(socks))
    step = len(socks) / k
    chosen = [socks[int(i * step)] for i in range(k)]
    sel = selectors.DefaultSelector()
    expect = {}
    bad = 0
    for i, s in enumerate(chosen):
        msg = ("holdpairs-%06d-" % i).encode() + os.urandom(24).hex().encode() + b"\n"
        try:
            sent = s.send(msg)  # ~70 bytes: fits in any send buffer
        except OSError:
            sent = -1
        if sent != len(msg):
            bad += 1
            continue
        expect[s] = [msg, b""]
        sel.register(s, selectors.EVENT_READ)
    good = 0
    deadline = time.monotonic() + timeout
    while expect and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            want, got = expect[s]
            got += data
            expect[s][1] = got
            if not data or not want.startswith(got):
                bad += 1
            elif got == want:
                good += 1
            else:
                continue
            sel.unregister(s)
            del expect[s]
    bad += len(expect)
    sel.close()
    return good, bad


def alive(socks):
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    for key, _ in sel.select(timeout=0.2):
        try:
            if key.fileobj.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            closed += 1
    sel.close()
    return len(socks) - closed, closed


def run_client(args):
    limit = raise_nofile()
    if limit < args.n + 50:
        say("error fd limit %d too low for %d connections" % (limit, args.n))
        return 2
    socks, failed, secs = connect_all(args.host, args.port, args.n, args.inflight, args.timeout)
    say("connected %d %d %.3f" % (len(socks), failed, secs))
    stdin = StdinLines()
    sel = selectors.DefaultSelector()
    sel.register(stdin.fd, selectors.EVENT_READ)
    while not stdin.eof:
        sel.select(timeout=1.0)
        for line in stdin.read():
            parts = line.split()
            if parts[0] == "sample":
                good, bad = sample(socks, int(parts[1]), args.timeout)
                say("sample %d %d" % (good, bad))
            elif parts[0] == "alive":
                say("alive %d %d" % alive(socks))
            elif parts[0] == "quit":
                stdin.eof = True
    for s in socks:
        s.close()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="role", required=True)
    sp = sub.add_parser("server")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=0)
    cp = sub.add_parser("client")
    cp.add_argument("--host", default="127.0.0.1")
    cp.add_argument("--port", type=int, required=True)
    cp.add_argument("--n", type=int, required=True)
    cp.add_argument("--inflight", type=int, default=256)
    cp.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    try:
        return run_server(args) if args.role == "server" else run_client(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
