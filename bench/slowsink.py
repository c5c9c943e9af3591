#!/usr/bin/python3
"""A slow reader in front of an iperf3 server, for the bounded-memory section.

  slowsink.py --upstream PORT [--chunk 65536] [--interval 0.01]

Listens on 127.0.0.1 (port 0) and prints "listening PORT".  Each accepted
connection gets its own connection to 127.0.0.1:UPSTREAM (the iperf3 server).
Bytes towards the upstream are read at most CHUNK at a time with INTERVAL
seconds of sleep after each read (64 KiB every 10 ms is about 52 Mbit/s), so a
fast sender in front of it is throttled by TCP flow control and whatever sits
in between (the relay under test) has to hold back.  Bytes coming back from the
upstream are copied at full speed.  Exits on SIGTERM or end of stdin.
Standard library only.
"""

import argparse
import socket
import sys
import threading
import time


def pump(src, dst, chunk, interval):
    try:
        while True:
            data = src.recv(chunk)
            if not data:
                break
            dst.sendall(data)
            if interval:
                time.sleep(interval)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(conn, upstream, chunk, interval):
    try:
        up = socket.create_connection(("127.0.0.1", upstream), timeout=10)
        up.settimeout(None)
    except OSError:
        conn.close()
        return
    threads = [
        threading.Thread(target=pump, args=(conn, up, chunk, interval), daemon=True),
        threading.Thread(target=pump, args=(up, conn, 65536, 0), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.close()
    up.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--chunk", type=int, default=65536)
    ap.add_argument("--interval", type=float, default=0.01)
    args = ap.parse_args()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    print("listening %d" % lsock.getsockname()[1], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(1):
                pass
        except OSError:
            pass
        try:
            lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        lsock.close()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return 0
        threading.Thread(target=serve, args=(conn, args.upstream, args.chunk, args.interval),
                         daemon=True).start()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
