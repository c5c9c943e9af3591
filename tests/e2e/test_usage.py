"""Command-line usage: every bad-usage case exits 2 with a message naming the
offending argument and prints nothing on stdout; --help and --version."""

import re

import pytest

from conftest import run_sockjoin

OK = "listen:127.0.0.1:0"
LONG_PATH = "/tmp/" + "p" * 195  # 200 characters

# (argv, phrase that must appear in stderr)
BAD_USAGE = [
    (["listen:99999", OK], "sockjoin: bad side 'listen:99999': port out of range"),
    (["listen:", OK], "sockjoin: bad side 'listen:': missing port"),
    (["listen:abc", OK], "sockjoin: bad side 'listen:abc': bad port 'abc'"),
    (["connect:9000", OK], "sockjoin: bad side 'connect:9000': missing host"),
    (["connect:localhost:0", OK], "sockjoin: bad side 'connect:localhost:0': port out of range"),
    (["foo:1", OK], "sockjoin: bad side 'foo:1': unknown type 'foo'"),
    (["listen:[::1:80", OK], "missing ']'"),
    (["listen:::1:80", OK], "IPv6 address must be in brackets"),
    (["unix:", OK], "sockjoin: bad side 'unix:': missing path"),
    (["unix-listen:", OK], "sockjoin: bad side 'unix-listen:': missing path"),
    (["unix:" + LONG_PATH, OK], "path too long"),
    (["unix-listen:" + LONG_PATH, OK], "path too long"),
    (["stdio:x", OK], "sockjoin: bad side 'stdio:x': stdio takes no address"),
    (["listen:0,foo=bar", OK], "unknown option 'foo'"),
    (["stdio", "stdio"], "sockjoin: stdio can be only one side"),
    ([OK], "sockjoin: expected two sides"),
    ([OK, OK, OK], "sockjoin: expected two sides"),
    (["--bogus", OK, OK], "sockjoin: unknown option '--bogus'"),
    (["--timeout", "abc", OK, OK], "sockjoin: bad --timeout 'abc'"),
    (["--timeout", "-1", OK, OK], "sockjoin: bad --timeout '-1'"),
    (["--keepalive", "1,2", OK, OK], "sockjoin: bad --keepalive '1,2'"),
    (["--buffer", "0", OK, OK], "sockjoin: bad --buffer '0'"),
    (["--log-traffic=foo", OK, OK], "sockjoin: bad --log-traffic 'foo'"),
    (["--max-pairs", "x", OK, OK], "sockjoin: bad --max-pairs 'x'"),
    (["--keepalive", "1,2,3", "--no-keepalive", OK, OK],
     "sockjoin: --keepalive and --no-keepalive conflict"),
    # The bad side may be side B too.
    ([OK, "listen:99999"], "sockjoin: bad side 'listen:99999': port out of range"),
    ([OK, "foo:1"], "sockjoin: bad side 'foo:1': unknown type 'foo'"),
]


def case_id(case):
    argv, _ = case
    text = " ".join(a if len(a) < 40 else a[:20] + "..." for a in argv)
    return text


@pytest.mark.parametrize("argv,phrase", BAD_USAGE, ids=[case_id(c) for c in BAD_USAGE])
def test_bad_usage(argv, phrase):
    r = run_sockjoin(argv, timeout=15)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, "exit %s, stderr: %s" % (r.returncode, err)
    assert phrase in err, err
    assert r.stdout == b"", r.stdout
    # The message is a 'sockjoin: ...' line.
    line = next(l for l in err.splitlines() if phrase in l)
    assert line.startswith("sockjoin: "), line


def test_no_arguments_is_bad_usage():
    r = run_sockjoin([], timeout=15)
    assert r.returncode == 2
    assert r.stdout == b""
    assert r.stderr.strip(), "no message on stderr"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    r = run_sockjoin([flag], timeout=15)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert re.search(r"usage", out, re.I), out
    for word in ("listen:", "connect:", "unix-listen:", "stdio", "--timeout", "--keepalive",
                 "--no-keepalive", "--stats", "--log-traffic", "--max-pairs", "--buffer",
                 "--verbose", "--connect-timeout", "--version"):
        assert word in out, "usage does not mention %s:\n%s" % (word, out)


def test_version():
    r = run_sockjoin(["--version"], timeout=15)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "sockjoin 0.1.0"



# --workers applies only where every connection is paired on its own.
WORKER_CASES = [
    (["--workers", "2", "listen:0", "listen:0"],
     "sockjoin: --workers needs a listen: side and a connect: or unix: side"),
    (["--workers", "2", "stdio", "listen:0"],
     "sockjoin: --workers needs a listen: side and a connect: or unix: side"),
    (["--workers", "2", "unix-listen:/tmp/x.sock", "connect:h:1"],
     "sockjoin: --workers needs a listen: side and a connect: or unix: side"),
    (["--workers", "2", "--timeout", "5", "listen:0", "connect:h:1"],
     "sockjoin: --workers cannot be combined with --timeout"),
    (["--workers", "2", "--max-pairs", "3", "listen:0", "connect:h:1"],
     "sockjoin: --workers cannot be combined with --max-pairs"),
    (["--workers", "auto", "listen:0", "listen:0"],
     "sockjoin: --workers needs a listen: side and a connect: or unix: side"),
    (["--workers", "0", "listen:0", "connect:h:1"], "sockjoin: bad --workers '0'"),
    (["--workers", "65", "listen:0", "connect:h:1"], "sockjoin: bad --workers '65'"),
]


@pytest.mark.parametrize("args,phrase", WORKER_CASES)
def test_workers_usage(args, phrase):
    r = run_sockjoin(args, timeout=15)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert phrase in err, err
    assert r.stdout == b""
