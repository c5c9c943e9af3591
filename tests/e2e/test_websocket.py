"""The WebSocket carrier behind a real HTTP reverse proxy: Debian's nginx,
run by the test (tests/e2e/nginx.py), proxying the Upgrade.

Two ways through it:
  - ws_peer (tests/unit/ws_peer.c), a driver of the carrier alone: a client
    sends hashed random bytes over a WebSocket through nginx to an echoing
    server, and a misconfigured or missing proxy location fails with an
    error that says what the proxy answered and, at the server, why;
  - sockjoin server and sockjoin expose with --transport ws, the agent
    dialling nginx only, and curl fetching through the tunnel.
Every process listens on port 0 and its port is read from what it prints;
nginx, which cannot, gets a free port (retried if taken).
"""

import contextlib
import hashlib
import http.server
import os
import random
import re
import select
import signal
import socketserver
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN, DEADLINE, SANITIZER_MARKERS, free_port, wait_for
from nginx import nginx, websocket_location  # noqa: F401 (nginx is a fixture)

WS_PEER = os.environ.get("SOCKJOIN_WS_PEER") or os.path.join(os.path.dirname(BIN), "tests",
                                                               "unit", "ws_peer")
KEY = "ws-k3y-for-tests"
EXPOSED_RE = re.compile(r"exposed (\S+) at tcp://(\S+):(\d+) tunnel=(\d+)")
MiB = 1 << 20


# --------------------------------------------------------------------------
# ws_peer
# --------------------------------------------------------------------------

def require_ws_peer():
    if not os.path.exists(WS_PEER):
        pytest.fail("ws_peer not found at %s (it is built with the unit tests; or set "
                    "SOCKJOIN_WS_PEER)" % WS_PEER)


def read_line(proc, timeout=DEADLINE):
    """One line of proc's stdout, within the deadline."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("no line from %s within %.1fs (have %r)" % (proc.args, timeout,
                                                                           line))
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError("%s closed stdout (have %r)" % (proc.args, line))
        line += chunk
    return line.decode().rstrip("\n")


class PeerServer:
    """ws_peer server PATH: an echo over a WebSocket on a port it prints."""

    def __init__(self, path):
        require_ws_peer()
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([WS_PEER, "server", path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.err)
        m = re.fullmatch(r"listening (\d+)", read_line(self.proc))
        assert m
        self.addr = "127.0.0.1:%s" % m.group(1)

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode("utf-8", "replace")

    def wait_stderr(self, text):
        wait_for(lambda: text in self.stderr_text(), what="%r from ws_peer server" % text)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(DEADLINE)
        self.proc.stdout.close()
        text = self.stderr_text()
        self.err.close()
        return text


@pytest.fixture
def peer_server():
    started = []

    def start(path):
        started.append(PeerServer(path))
        return started[-1]

    yield start
    reports = []
    for s in started:
        text = s.stop()
        print("---- ws_peer server stderr ----\n" + text)
        if any(marker in text for marker in SANITIZER_MARKERS):
            reports.append(text)
    if reports:
        pytest.fail("\n\n".join(reports))


def peer_client(addr, path, nbytes, seed, host="tunnel.example", wait=True):
    """ws_peer client: sends nbytes through the WebSocket at addr, reads the
    echo. Returns (exit status, its output line) or, without wait, the
    process."""
    require_ws_peer()
    proc = subprocess.Popen([WS_PEER, "client", addr, host, path, str(nbytes), str(seed)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    if not wait:
        return proc
    return finish_client(proc)


def finish_client(proc, timeout=DEADLINE * 4):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("ws_peer client hung; stdout %r stderr %r" % (out, err))
    text = err.decode("utf-8", "replace")
    assert not any(marker in text for marker in SANITIZER_MARKERS), text
    return proc.returncode, out.decode().strip()


def assert_echoed(result, nbytes):
    rc, line = result
    assert rc == 0, line
    ok, sent, received, tx, rx = line.split()
    assert (ok, int(sent), int(received)) == ("ok", nbytes, nbytes)
    assert tx == rx


def upgrades_logged(proxy, path):
    """Requests for path that nginx logged as switched (101): it logs each
    one when its connection has ended."""
    return len(re.findall(r'"GET %s(?:\?\S*)? HTTP/1\.1" 101 ' % re.escape(path),
                          proxy.access_log()))


# --------------------------------------------------------------------------
# The carrier through nginx
# --------------------------------------------------------------------------

def test_carrier_through_nginx(nginx, peer_server):
    """16 MiB each way on one WebSocket, then four at once, each hashed both
    ways; nginx switched every one of them (101 in its access log)."""
    server = peer_server("/tunnel")
    proxy = nginx({"/tunnel": websocket_location(server.addr)})
    assert_echoed(peer_client(proxy.addr, "/tunnel", 16 * MiB, 1), 16 * MiB)
    sizes = [2 * MiB, 3 * MiB + 1, 1, 0]
    procs = [peer_client(proxy.addr, "/tunnel?n=%d" % i, n, 10 + i, wait=False)
             for i, n in enumerate(sizes)]
    for proc, n in zip(procs, sizes):
        assert_echoed(finish_client(proc), n)
    wait_for(lambda: upgrades_logged(proxy, "/tunnel") == 5, what="five upgrades in nginx's log")
    assert "ws_peer" not in server.stderr_text()


def test_proxy_refusals_are_named(nginx, peer_server):
    """What a proxy in the way answers is in the client's error, and the
    server says what was missing from the request it got."""
    server = peer_server("/tunnel")
    down = "127.0.0.1:%d" % free_port()
    proxy = nginx({
        "/tunnel": websocket_location(server.addr),
        "/http10": websocket_location(server.addr, "/tunnel", upgrade=False, http11=False),
        "/no-upgrade": websocket_location(server.addr, "/tunnel", upgrade=False),
        "/down": websocket_location(down),
    })
    cases = [
        # nginx has no location for it
        ("/elsewhere", "HTTP 404 Not Found", None),
        # proxied as HTTP/1.0 (nginx's default): no upgrade possible
        ("/http10", "HTTP 400 Bad Request",
         "request is not HTTP/1.1 (a proxy in between needs proxy_http_version 1.1)"),
        # HTTP/1.1, but Upgrade and Connection not passed on (hop-by-hop)
        ("/no-upgrade", "HTTP 426 Upgrade Required", 'no "Upgrade: websocket" header'),
        # nothing behind the proxy
        ("/down", "HTTP 502 Bad Gateway", None),
    ]
    for path, client_says, server_says in cases:
        rc, line = peer_client(proxy.addr, path, 1000, 1)
        assert rc == 1, line
        assert line == "error: ws: server refused the upgrade: " + client_says
        if server_says:
            server.wait_stderr("ws_peer: server: ws: refused an upgrade request: " + server_says)
    # And the right location still works after all that.
    assert_echoed(peer_client(proxy.addr, "/tunnel", 100000, 2), 100000)


def test_backend_lost_through_nginx(nginx, peer_server):
    """The server dies mid-stream: the client behind nginx gets an error,
    never a clean end of the stream."""
    server = peer_server("/tunnel")
    proxy = nginx({"/tunnel": websocket_location(server.addr)})
    client = peer_client(proxy.addr, "/tunnel", 1 << 40, 3, wait=False)
    # The transfer is under way once nginx has an upgraded connection open
    # to the server.
    wait_for(lambda: established_to(server), what="nginx connected to the server")
    server.proc.kill()
    rc, line = finish_client(client)
    assert rc == 1, line
    assert line.startswith("error: "), line
    assert ("peer closed the connection without a close frame (truncated)" in line
            or "connection reset by peer" in line), line


def established_to(server):
    port = server.addr.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%s )" % port],
                         capture_output=True, text=True, timeout=DEADLINE).stdout
    return out.strip() != ""


# --------------------------------------------------------------------------
# sockjoin server and expose, the tunnel through nginx
# --------------------------------------------------------------------------

def env_with(**kv):
    env = dict(os.environ)
    for k in ("SOCKJOIN_API_KEY", "SOCKJOIN_API_KEYS"):
        env.pop(k, None)
    env.update(kv)
    return env


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@pytest.fixture
def web_root():
    """An HTTP server on a free loopback port serving a directory of files."""
    root = tempfile.mkdtemp(prefix="sj-web-")
    rng = random.Random(7)
    files = {"small.txt": b"hello through nginx and the tunnel\n",
             "big.bin": rng.randbytes(8 * MiB)}
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), lambda *a: QuietHandler(*a, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % httpd.server_address[1], files
    httpd.shutdown()
    httpd.server_close()
    with contextlib.suppress(OSError):
        for name in files:
            os.unlink(os.path.join(root, name))
        os.rmdir(root)


def curl(url):
    out = subprocess.run(["curl", "-sS", "--fail", "--max-time", str(int(DEADLINE)), url],
                         capture_output=True, timeout=DEADLINE * 2)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def test_expose_behind_nginx(sockjoin, nginx, web_root):
    """sockjoin server behind nginx at /sockjoin; the agent knows only nginx's
    address; curl fetches through the tunnel, again and again."""
    local, files = web_root
    env = env_with(SOCKJOIN_API_KEYS=KEY)
    server = sockjoin("server", "--listen", "127.0.0.1:0", "--public-bind", "127.0.0.1",
                      "--transport", "ws", "--ws-path", "/sockjoin", wait=False, env=env)
    m = re.fullmatch(r"listening server (\S+)", server.read_stdout_line())
    assert m
    proxy = nginx({"/sockjoin": websocket_location(m.group(1))})
    agent = sockjoin("expose", local, "--server", proxy.addr, "--transport", "ws",
                     "--ws-path", "/sockjoin", wait=False, env=env_with(SOCKJOIN_API_KEY=KEY))
    m = EXPOSED_RE.fullmatch(agent.read_stdout_line())
    assert m and m.group(1) == local, "unexpected stdout line"
    public = "http://%s:%s" % (m.group(2), m.group(3))
    for _ in range(20):
        assert curl(public + "/small.txt") == files["small.txt"]
    got = curl(public + "/big.bin")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(files["big.bin"]).hexdigest()
    # The session did go through nginx: it logs the switch once it ends.
    agent.stop()
    wait_for(lambda: upgrades_logged(proxy, "/sockjoin") == 1, what="the upgrade in nginx's log")


def test_expose_wrong_path_behind_nginx(sockjoin, nginx):
    """An agent asking nginx for a path it does not proxy is told so, and
    exits 1."""
    env = env_with(SOCKJOIN_API_KEYS=KEY)
    server = sockjoin("server", "--listen", "127.0.0.1:0", "--public-bind", "127.0.0.1",
                      "--transport", "ws", "--ws-path", "/sockjoin", wait=False, env=env)
    m = re.fullmatch(r"listening server (\S+)", server.read_stdout_line())
    proxy = nginx({"/sockjoin": websocket_location(m.group(1))})
    agent = sockjoin("expose", "127.0.0.1:%d" % free_port(), "--server", proxy.addr,
                     "--transport", "ws", "--ws-path", "/other", wait=False,
                     env=env_with(SOCKJOIN_API_KEY=KEY))
    assert agent.wait_exit() == 1
    assert "ws: server refused the upgrade: HTTP 404 Not Found" in agent.stderr_text()
