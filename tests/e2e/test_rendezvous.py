"""The README's rendezvous: a relay that both ends dial out to.

    relay:   sockjoin listen:0,auth=hmac:k listen:0,auth=hmac:k
    device:  sockjoin --persist 2 connect:SSHD connect:RELAY_B,auth=hmac:k[,encrypt=psk:e]
    client:  sockjoin listen:0 connect:RELAY_A,auth=hmac:k[,encrypt=psk:e]

and then `ssh -p CLIENT_PORT 127.0.0.1` reaches a real sshd (OpenSSH, in
inetd mode behind a listener of the test's own on port 0, with a throwaway
host key and client key), session after session.
"""

import os
import shutil
import socket
import subprocess
import threading

import pytest

from conftest import DEADLINE, fmt_hostport

SSHD = "/usr/sbin/sshd"
SSH = shutil.which("ssh")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and SSH), reason="openssh-server and openssh-client are needed"
)


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)


class InetdSshd:
    """sshd -i for every connection accepted on a loopback port of our own."""

    def __init__(self, workdir):
        self.dir = workdir
        keygen(os.path.join(workdir, "host_key"))
        keygen(os.path.join(workdir, "user_key"))
        shutil.copy(os.path.join(workdir, "user_key.pub"), os.path.join(workdir, "authorized_keys"))
        self.config = os.path.join(workdir, "sshd_config")
        with open(self.config, "w") as f:
            f.write(
                "HostKey %s\n"
                "AuthorizedKeysFile %s\n"
                "StrictModes no\n"
                "UsePAM no\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "PermitRootLogin prohibit-password\n"
                "LogLevel ERROR\n"
                % (os.path.join(workdir, "host_key"), os.path.join(workdir, "authorized_keys"))
            )
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = fmt_hostport("127.0.0.1", self.sock.getsockname()[1])
        self.procs = []
        self.closed = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            p = subprocess.Popen([SSHD, "-i", "-f", self.config], stdin=conn, stdout=conn,
                                 stderr=subprocess.DEVNULL)
            conn.close()
            self.procs.append(p)

    def close(self):
        self.closed = True
        self.sock.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def sshd(short_tmp):
    s = InetdSshd(short_tmp)
    yield s
    s.close()


def ssh(port, key, command):
    return subprocess.run(
        [SSH, "-p", str(port), "-i", key, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         "-o", "ConnectTimeout=%d" % int(DEADLINE), "root@127.0.0.1", command],
        capture_output=True, timeout=DEADLINE * 2, stdin=subprocess.DEVNULL)


def secret(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def start_rendezvous(sockjoin, sshd, tmp, end_options):
    hk = secret(tmp, "hmac", "rendezvous key")
    relay = sockjoin("-v", "listen:127.0.0.1:0,auth=hmac:" + hk, "listen:127.0.0.1:0,auth=hmac:" + hk)
    opts = ",auth=hmac:" + hk + end_options
    device = sockjoin("-v", "--persist", "2", "connect:" + sshd.addr,
                      "connect:" + relay.listening["B"] + opts, wait=False)
    client = sockjoin("-v", "listen:127.0.0.1:0", "connect:" + relay.listening["A"] + opts)
    return relay, device, client


@pytest.mark.parametrize("encrypt", [False, True], ids=["auth", "auth+encrypt"])
def test_ssh_through_authenticated_rendezvous(sockjoin, sshd, short_tmp, encrypt):
    end_options = ""
    if encrypt:
        end_options = ",encrypt=psk:" + secret(short_tmp, "psk", "a passphrase both ends know")
    relay, device, client = start_rendezvous(sockjoin, sshd, short_tmp, end_options)
    port = client.addr("A")[1]
    key = os.path.join(short_tmp, "user_key")
    # Session after session: the device replaces each standing connection.
    for i in range(4):
        r = ssh(port, key, "echo session-%d; uname -s" % i)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert r.stdout.decode().split() == ["session-%d" % i, "Linux"]
    relay.wait_stderr(r"pair 4 closed")
    # The relay saw only authenticated ends, and refused none.
    assert not relay.stderr_matches(r"refused")


def test_wrong_key_never_reaches_sshd(sockjoin, sshd, short_tmp):
    hk = secret(short_tmp, "hmac", "rendezvous key")
    wrong = secret(short_tmp, "wrong", "another key")
    relay = sockjoin("-v", "listen:127.0.0.1:0,auth=hmac:" + hk, "listen:127.0.0.1:0,auth=hmac:" + hk)
    sockjoin("-v", "--persist", "1", "connect:" + sshd.addr,
             "connect:" + relay.listening["B"] + ",auth=hmac:" + wrong, wait=False)
    relay.wait_stderr(r"B 127\.0\.0\.1:\d+ refused: auth failed: wrong answer to the challenge")
    assert sshd.procs == []
