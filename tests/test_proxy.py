"""The documented production setup: nginx with deploy/nginx/infinity-metrics.conf as shipped (only
the ports, certificate paths and upstream changed for the test) in front of gunicorn with the
environment of deploy/env.example. Normal requests keep being answered while a hundred clients
trickle their request headers, and the proxy's own errors come in the API's envelope."""

import contextlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.env import ROOT
from bench.servers import free_port, running_server

from .servers import documented_env

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
HOST = "metrics.example.com"

# Skipped only on a developer machine without nginx; in CI (CI=true) a missing nginx fails.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(NGINX is None and os.environ.get("CI") != "true", reason="nginx is not installed (apt-get install nginx)"),
]


def _site_config(https_port, http_port, upstream_port, cert, key):
    site = (ROOT / "deploy" / "nginx" / "infinity-metrics.conf").read_text()
    for old, new in [
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        (f"/etc/letsencrypt/live/{HOST}/fullchain.pem", str(cert)),
        (f"/etc/letsencrypt/live/{HOST}/privkey.pem", str(key)),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
    ]:
        assert old in site, old
        site = site.replace(old, new)
    return "\n".join(line for line in site.splitlines() if "listen [::]" not in line)  # loopback IPv4 only here


@contextlib.contextmanager
def nginx_in_front(tmp_path, upstream_port):
    if NGINX is None:  # only under CI=true (skipped otherwise)
        pytest.fail("nginx is not installed, and CI requires it (.ci/run installs it: apt-get install nginx)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    https_port, http_port = free_port(), free_port()
    (tmp_path / "site.conf").write_text(_site_config(https_port, http_port, upstream_port, cert, key))
    # As Debian's /etc/nginx/nginx.conf has it (768 connections per worker process), with the
    # files this test may write in its own folder.
    user = "user root;" if os.geteuid() == 0 else ""  # the test's folder is not readable by nobody
    temp = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"{user} worker_processes auto; pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};\n"
        "events { worker_connections 768; }\n"
        f"http {{ access_log off; default_type application/octet-stream; {temp} include {tmp_path / 'site.conf'}; }}\n"
    )
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log"),
                             "-g", "daemon off;"], start_new_session=True, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {proc.stderr.read().decode()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port), timeout=1):
                break
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield https_port, http_port
    finally:
        os.killpg(proc.pid, 15)  # nginx and its workers: a group we started
        proc.wait(timeout=10)


def _tls():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _request(port, method, path, body=None, headers=None, timeout=2.0, tls=True):
    """(status, headers, body, seconds) over a new connection."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=_tls()) if tls
            else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))  # fmt: skip
    try:
        started = time.monotonic()
        conn.request(method, path, body, {"Host": HOST, **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data, time.monotonic() - started
    finally:
        conn.close()


class SlowClients:
    """``count`` TLS connections that send a request line and then one header line a second,
    never finishing the request (slowloris)."""

    def __init__(self, port, count):
        def connect(_):
            sock = _tls().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: {HOST}\r\n".encode())
            return sock

        with ThreadPoolExecutor(max_workers=16) as pool:
            self.socks = list(pool.map(connect, range(count)))
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.errors = []
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        n = 0
        while not self.stopped.wait(1.0):
            n += 1
            self.send_line(f"X-Slow-{n}: 1")

    def send_line(self, line):
        """One more header line on every connection; how many took it (nginx closes a connection
        whose header is not complete after client_header_timeout)."""
        with self.lock:
            open_now = 0
            for sock in self.socks:
                try:
                    sock.sendall(f"{line}\r\n".encode())
                    open_now += 1
                except OSError as exc:
                    self.errors.append(repr(exc))
            return open_now

    def close(self):
        self.stopped.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


@pytest.fixture
def app_env(tmp_path, settings):
    # The test's SECRET_KEY: the server verifies the keys this test creates.
    return documented_env(tmp_path / "data", SECRET_KEY=settings.SECRET_KEY, RATE_LIMIT_EVENTS="100000", RATE_LIMIT_ANON="100000")


def test_normal_requests_are_answered_while_a_hundred_clients_trickle_headers(tmp_path, app_env, cast):
    with running_server(server="gunicorn:gthread", workers=2, threads=8, env=app_env, settings_module="infinity.settings",
                        ready_path="/api/v1/health?live") as base:  # fmt: skip
        with nginx_in_front(tmp_path, int(base.rsplit(":", 1)[1])) as (https_port, _):
            slow = SlowClients(https_port, 150)
            try:
                time.sleep(1.5)  # every slow client has sent a header line or two
                answers = [_request(https_port, "GET", "/api/v1/health") for _ in range(5)]
                answers += [_request(https_port, "POST", "/api/v1/events", '{"event_name": "through the proxy"}',
                                     {"Authorization": f"Bearer {cast.key}", "Content-Type": "application/json"})
                            for _ in range(5)]  # fmt: skip
                still_open, errors = slow.send_line("X-Still: here"), slow.errors
            finally:
                slow.close()
    assert still_open >= 100, errors[:3]
    assert [a[0] for a in answers] == [200] * 5 + [201] * 5
    assert max(a[3] for a in answers) < 2.0


def test_plain_http_is_redirected_and_the_proxys_errors_are_in_the_envelope(tmp_path, app_env):
    with running_server(server="gunicorn:gthread", workers=1, threads=2, env=app_env, settings_module="infinity.settings",
                        ready_path="/api/v1/health?live") as base:  # fmt: skip
        with nginx_in_front(tmp_path, int(base.rsplit(":", 1)[1])) as (https_port, http_port):
            redirect = _request(http_port, "GET", "/api/v1/health?live", tls=False)
            ok = _request(https_port, "GET", "/api/v1/health?live")
            too_large = _request(https_port, "POST", "/api/v1/events/batch", b"[" + b" " * (3 * 1024 * 1024) + b"]",
                                 {"Content-Type": "application/json"}, timeout=10)  # fmt: skip
    assert redirect[0] == 301 and redirect[1]["Location"] == f"https://{HOST}/api/v1/health?live"
    assert ok[0] == 200  # X-Forwarded-Proto believed: no redirect loop under SECURE_SSL_REDIRECT
    assert ok[1]["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert too_large[0] == 413 and too_large[1]["Content-Type"] == "application/json"
    assert too_large[2].startswith(b'{"error": {"code": "PAYLOAD_TOO_LARGE"')


def test_the_app_down_is_a_503_in_the_envelope_with_retry_after(tmp_path):
    with nginx_in_front(tmp_path, free_port()) as (https_port, _):  # nothing listens upstream
        status, headers, body, _ = _request(https_port, "GET", "/api/v1/analytics")
    assert status == 503 and headers["Content-Type"] == "application/json" and headers["Retry-After"] == "5"
    assert body.startswith(b'{"error": {"code": "SERVICE_UNAVAILABLE"')
