"""Debian's nginx as a reverse proxy owned by a test.

Each instance runs as the test's own process (no daemon, no system files):
a temporary prefix holds its configuration, pid file, logs and temp paths,
and it is stopped at teardown. nginx cannot listen on port 0, so a free
loopback port is picked at run time; if another process takes it first and
nginx fails to bind, a new port is picked and nginx started again.

    def test_x(nginx):
        proxy = nginx({"/tunnel": websocket_location("127.0.0.1:9000")})
        proxy.port, proxy.url("/tunnel"), proxy.access_log()
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from conftest import DEADLINE, free_port, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BIND_ATTEMPTS = 10


def websocket_location(backend, uri="", upgrade=True, http11=True, read_timeout="300s"):
    """A location proxying to backend ('HOST:PORT'), the request's path
    passed on as it is, or with the location's prefix replaced by uri. With
    upgrade (the usual WebSocket recipe) the Upgrade and Connection headers
    are passed on; the flags leave parts of it out, to test what a
    misconfigured proxy does."""
    lines = ["proxy_pass http://%s%s;" % (backend, uri), "proxy_read_timeout %s;" % read_timeout]
    if http11:
        lines.append("proxy_http_version 1.1;")
    if upgrade:
        lines.append("proxy_set_header Upgrade $http_upgrade;")
        lines.append('proxy_set_header Connection "upgrade";')
    return "\n".join(lines)


class Nginx:
    def __init__(self, locations):
        """locations: {path prefix: body of its location block}."""
        if not os.path.exists(NGINX):
            pytest.skip("nginx is not installed (%s)" % NGINX)
        self.locations = locations
        self.dir = tempfile.mkdtemp(prefix="sj-nginx-")
        os.chmod(self.dir, 0o755)  # workers may run as another user
        for sub in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.dir, "tmp", sub))
        self.proc = None
        self.port = None

    # -- configuration ---------------------------------------------------
    def _path(self, name):
        return os.path.join(self.dir, name)

    def _config(self, port):
        user = "user root root;\n" if os.geteuid() == 0 else ""
        locs = "".join("        location %s {\n%s\n        }\n"
                       % (path, "\n".join("            " + l for l in body.splitlines()))
                       for path, body in self.locations.items())
        temps = "".join("    %s_temp_path %s;\n" % (kind, self._path("tmp/" + sub))
                        for kind, sub in (("client_body", "client"), ("proxy", "proxy"),
                                          ("fastcgi", "fastcgi"), ("uwsgi", "uwsgi"),
                                          ("scgi", "scgi")))
        return ("%sworker_processes 1;\n"
                "pid %s;\n"
                "error_log %s info;\n"
                "events { worker_connections 1024; }\n"
                "http {\n"
                "    access_log %s;\n"
                "%s"
                "    server {\n"
                "        listen 127.0.0.1:%d;\n"
                "%s"
                "    }\n"
                "}\n") % (user, self._path("nginx.pid"), self._path("error.log"),
                          self._path("access.log"), temps, port, locs)

    # -- running -----------------------------------------------------------
    def start(self):
        for _ in range(BIND_ATTEMPTS):
            port = free_port()
            with open(self._path("nginx.conf"), "w") as f:
                f.write(self._config(port))
            self.proc = subprocess.Popen(
                [NGINX, "-p", self.dir, "-e", self._path("error.log"),
                 "-c", self._path("nginx.conf"), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait_listening(port):
                self.port = port
                return self
            self.proc.wait(DEADLINE)
            err = self.proc.stderr.read().decode("utf-8", "replace") + self.error_log()
            self.proc.stderr.close()
            self.proc = None
            if "Address already in use" not in err:
                raise AssertionError("nginx did not start:\n%s" % err)
        raise AssertionError("nginx found no free port in %d attempts" % BIND_ATTEMPTS)

    def _wait_listening(self, port):
        """True once nginx answers on port; False if it exited (bind failed).
        The answer must be nginx's own: whoever took the port first could
        accept a connection too."""
        def ready():
            if self.proc.poll() is not None:
                return "exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"GET /sj-nginx-probe HTTP/1.0\r\n\r\n")
                s.settimeout(DEADLINE)
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                if b"\r\nServer: nginx" in answer:
                    return "up"
            return None
        return wait_for(ready, what="nginx to listen on port %d" % port) == "up"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- looking at it -----------------------------------------------------
    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def url(self, path):
        return "http://%s%s" % (self.addr, path)

    def _read(self, name):
        with contextlib.suppress(OSError), open(self._path(name), errors="replace") as f:
            return f.read()
        return ""

    def error_log(self):
        return self._read("error.log")

    def access_log(self):
        return self._read("access.log")


@pytest.fixture
def nginx():
    """Factory: nginx({path: location body}) -> a started Nginx, stopped
    (and its directory removed, after its logs are printed) at teardown."""
    started = []

    def start(locations):
        proxy = Nginx(locations)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()
        print("---- nginx error.log ----\n%s---- nginx access.log ----\n%s"
              % (proxy.error_log(), proxy.access_log()))
        proxy.cleanup()
