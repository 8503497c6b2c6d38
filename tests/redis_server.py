"""A redis-server of the test's own, on a free port, that the test may stop and start again."""

import shutil
import socket
import subprocess
import time

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, tmp_path, *args):
        self.port = free_port()
        self.args = [*args]
        self.dir = tmp_path
        self.proc = None
        password = next((args[i + 1] for i, a in enumerate(args) if a == "--requirepass"), None)
        self.url = f"redis://{':' + password + '@' if password else ''}127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server") or pytest.skip("redis-server is not installed")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*command, "--dir", str(self.dir), *self.args], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
