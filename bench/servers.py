"""Start and stop the servers a benchmark measures: loopback only, always stopped."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.env import ROOT

VENV_BIN = os.path.dirname(sys.executable)


def checkout(path: str) -> Path:
    """Another checkout of the project with its own ``.venv`` (``--baseline``), as an absolute path."""
    root = Path(path).resolve()
    if not (root / "manage.py").is_file() or not (root / ".venv" / "bin" / "python").is_file():
        raise SystemExit(f"{root} is not a checkout with its own .venv (scripts/setup there first)")
    return root


def venv_bin(root: Path) -> str:
    """The bin directory of the virtualenv that runs ``root``: this process's for this checkout."""
    return VENV_BIN if root == ROOT else str(root / ".venv" / "bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server: str, port: int, workers: int, threads: int, bin_dir: str = VENV_BIN, root: Path = ROOT) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server == "granian":
        return [os.path.join(bin_dir, "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--blocking-threads", str(threads), "--backpressure", str(max(threads, 8)),
                "--log-level", "warning", "--no-ws", "infinity.wsgi:application"]  # fmt: skip
    if server.startswith("gunicorn"):
        worker_class = server.partition(":")[2] or "sync"
        # The checkout's production settings (gunicorn.conf.py, as its scripts/serve and deploy/ run
        # it: a listening socket per worker, workers that die with the master); a checkout from
        # before that file ran with --reuse-port. One thread for sync: gunicorn turns a sync worker
        # with threads into a gthread one.
        config = root / "gunicorn.conf.py"
        settings = ["--config", str(config)] if config.is_file() else ["--backlog", "2048", "--reuse-port"]
        return [os.path.join(bin_dir, "gunicorn"), *settings, "infinity.wsgi:application", "--bind", bind, "--workers",
                str(workers), "--worker-class", worker_class, "--log-level", "warning",
                "--threads", str(threads if worker_class == "gthread" else 1)]  # fmt: skip
    raise SystemExit(f"unknown server {server!r}: gunicorn, gunicorn:gthread or granian")


@contextlib.contextmanager
def running_server(
    *, server="gunicorn", workers=2, threads=4, env=None, settings_module="bench.settings", ready_path="/bench/bare", timeout=30,
    root: Path = ROOT, port: int | None = None,
):  # fmt: skip
    """Start the app of the checkout at ``root`` (default: this one) under ``server`` on ``port``
    (default: a free loopback port); yield its base URL; stop it.

    ``env`` is laid over this process's environment; a ``None`` value removes that variable.
    The test suite uses this too, with the production settings module.
    """
    port = port or free_port()
    command = server_command(server, port, workers, threads, venv_bin(root), root)
    if not os.path.exists(command[0]):
        raise SystemExit(f"{command[0]} is not installed (pip install {os.path.basename(command[0])})")
    full_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = str(value)
    full_env["DJANGO_SETTINGS_MODULE"] = settings_module
    full_env["PYTHONPATH"] = str(root)
    proc = subprocess.Popen(command, cwd=root, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{server} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(base + ready_path, timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{server} did not start within {timeout} s")
                time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: a group we started
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
