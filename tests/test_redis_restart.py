"""After a Redis outage every worker counts in Redis again within 5 seconds of its return, under load."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings

from accounts.keys import create_api_key

from .redis_server import RedisServer
from .servers import gunicorn_servers, post_event

RESUMED_WITHIN = 5.0


class Load:
    """``threads`` clients posting events, each on a new connection (so both workers get some),
    until paused; ``statuses`` of the requests completed while counting is on."""

    def __init__(self, url, key, threads=6):
        self.url, self.key = url, key
        self.running = threading.Event()
        self.running.set()
        self.stopped = False
        self.lock = threading.Lock()
        self.idle = threading.Semaphore(0)
        self.statuses = []
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.threads = threads
        for _ in range(threads):
            self.pool.submit(self._client)

    def _client(self):
        while not self.stopped:
            if not self.running.is_set():
                self.idle.release()
                self.running.wait()
                continue
            status = post_event(self.url, self.key, "load")[0]
            with self.lock:
                self.statuses.append(status)

    def resume(self):
        self.running.set()

    def pause(self):
        """Stop starting requests and wait for those under way."""
        self.running.clear()
        for _ in range(self.threads):
            self.idle.acquire()

    def close(self):
        self.stopped = True
        self.running.set()
        self.pool.shutdown()


def counted_in_redis(client, key_pk):
    return sum(int(client.get(k)) for k in client.keys(f"{settings.RATELIMIT_KEY_PREFIX}:events:key:{key_pk}:*"))


@pytest.mark.django_db(transaction=True)
def test_every_worker_counts_in_redis_again_within_5_s_of_a_restart(cast, tmp_path):
    server = RedisServer(tmp_path).start()
    client = redis.Redis.from_url(server.url)
    api_key, raw = create_api_key(site=cast.site)
    try:
        with gunicorn_servers(1, workers=2, server="gunicorn:gthread", REDIS_URL=server.url, RATE_LIMIT_EVENTS=10**6) as (url,):
            load = Load(url, raw)
            try:
                time.sleep(1.0)
                server.stop()  # every worker's breaker opens; requests are counted per process
                time.sleep(3.0)
                server.start()
                restarted = time.monotonic()
                time.sleep(RESUMED_WITHIN - (time.monotonic() - restarted))
                load.pause()
                before, load.statuses = counted_in_redis(client, api_key.pk), []
                load.resume()
                time.sleep(2.0)
                load.pause()
                served = list(load.statuses)
                after = counted_in_redis(client, api_key.pk)
            finally:
                load.close()
    finally:
        server.stop()
    assert served and set(served) == {201}
    assert after - before == len(served)  # each request of the load, whichever worker served it
