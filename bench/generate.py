"""Load N realistic events into the database named by DATABASE_URL (or ``--db``).

    python -m bench generate -n 1000000 --db bench_1m [--reset] [--seed 1]

The shape of the traffic, per day over the last 90 days (today included, up to the present minute):
- four sites sharing the traffic 70/15/10/5 %; the first (``bench.example.com``) is the one
  the query benchmark reads, ``shop.example.com`` has timezone Europe/Berlin;
- visitors per day scaled so the total is N (≈ 45k/day at N = 10M), weekends quieter,
  daytime hours busier; 20 % of visitors return from a per-site pool (a stable id);
- one session per visitor-day (5 % have two), 1–8 page views (half bounce) 10 s–4 min apart
  over 500 pages with a Zipf-like popularity;
- 20 traffic sources (direct, search, social, newsletter/ads with UTM tags), 30 countries,
  browsers/OS/devices in consistent combinations;
- 10 % of sessions send a custom event (``signup`` with ``metadata.plan``, ``download``,
  ``cta_click``, ``newsletter_subscribe``), 2 % of sessions on the main and shop sites buy
  (USD/EUR/GBP/JPY, 1–3 units).

On PostgreSQL rows stream through ``COPY … FROM STDIN`` in one transaction (then ANALYZE);
on SQLite they go through ``executemany`` in batches. The schema comes from
``manage.py migrate`` first. Prints the main site's API key (``events:write`` +
``analytics:read``) — it is valid only with the same SECRET_KEY (bench.env fixes one).
"""

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from infinity.progress import Progress

DAYS = 90
SITES = [  # domain, share of the traffic, timezone, sells things
    ("bench.example.com", 0.70, "UTC", True),
    ("shop.example.com", 0.15, "Europe/Berlin", True),
    ("docs.example.com", 0.10, "UTC", False),
    ("blog.example.com", 0.05, "America/New_York", False),
]
MAIN_SITE = SITES[0][0]

COLUMNS = (
    "kind", "name", "path", "metadata", "price", "currency", "quantity", "product_name",
    "occurred_at", "received_at",
    "site_id", "visitor", "session", "hostname",
    "referrer", "source", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "country", "browser", "os", "device",
)  # fmt: skip
NULL = "\\N"


def _pages():
    pages = ["/", "/pricing", "/features", "/about", "/contact", "/signup", "/login", "/blog", "/docs", "/changelog"]
    topics = ["analytics", "privacy", "gdpr", "cookies", "dashboards", "funnels", "goals", "revenue", "api", "tracking"]
    for i in range(120):
        pages.append(f"/blog/{topics[i % len(topics)]}-{i // len(topics) + 1}")
    sections = ["getting-started", "api", "tracker", "self-hosting", "integrations", "reference"]
    for i in range(250):
        pages.append(f"/docs/{sections[i % len(sections)]}/page-{i // len(sections) + 1}")
    for i in range(500 - len(pages)):
        pages.append(f"/features/feature-{i + 1}")
    return pages[:500]


PAGES = _pages()
PAGE_WEIGHTS = [1.0 / (i + 1) ** 0.9 for i in range(len(PAGES))]

# (name, referrer, utm_source, utm_medium, utm_campaign, utm_term, utm_content, weight)
SOURCES = [
    ("", "", "", "", "", "", "", 34),
    ("Google", "https://www.google.com/", "", "", "", "", "", 24),
    ("Google", "https://www.google.com/", "google", "cpc", "brand-search", "web analytics", "ad-1", 3),
    ("Bing", "https://www.bing.com/", "", "", "", "", "", 4),
    ("DuckDuckGo", "https://duckduckgo.com/", "", "", "", "", "", 4),
    ("Ecosia", "https://www.ecosia.org/", "", "", "", "", "", 1),
    ("Yahoo", "https://search.yahoo.com/", "", "", "", "", "", 1),
    ("Yandex", "https://yandex.ru/", "", "", "", "", "", 1),
    ("Baidu", "https://www.baidu.com/", "", "", "", "", "", 1),
    ("Facebook", "https://www.facebook.com/", "", "", "", "", "", 4),
    ("Twitter", "https://t.co/", "", "", "", "", "", 3),
    ("LinkedIn", "https://www.linkedin.com/", "linkedin", "social", "launch", "", "", 2),
    ("Reddit", "https://www.reddit.com/r/selfhosted/", "", "", "", "", "", 3),
    ("Hacker News", "https://news.ycombinator.com/", "", "", "", "", "", 3),
    ("GitHub", "https://github.com/", "", "", "", "", "", 2),
    ("YouTube", "https://www.youtube.com/", "", "", "", "", "", 1),
    ("Instagram", "https://www.instagram.com/", "", "", "", "", "", 1),
    ("Pinterest", "https://www.pinterest.com/", "", "", "", "", "", 1),
    ("Product Hunt", "https://www.producthunt.com/", "producthunt", "referral", "launch-day", "", "", 1),
    ("Newsletter", "", "newsletter", "email", "monthly-digest", "", "header-link", 4),
    ("Medium", "https://medium.com/", "", "", "", "", "", 1),
]

COUNTRIES = [
    ("US", 24), ("DE", 10), ("GB", 8), ("FR", 6), ("IN", 6), ("CA", 4), ("NL", 3), ("BR", 3), ("ES", 3), ("IT", 3),
    ("JP", 3), ("AU", 3), ("PL", 2), ("SE", 2), ("CH", 2), ("AT", 1), ("BE", 1), ("DK", 1), ("NO", 1), ("FI", 1),
    ("IE", 1), ("PT", 1), ("CZ", 1), ("MX", 2), ("AR", 1), ("ZA", 1), ("KR", 2), ("SG", 1), ("TR", 1), ("", 2),
]  # fmt: skip
# device → [(os, weight, [(browser, weight)])]
ENVIRONMENTS = {
    ("desktop", 55): [
        ("Windows", 50, [("Chrome", 65), ("Edge", 20), ("Firefox", 12), ("Opera", 3)]),
        ("Mac OS X", 35, [("Chrome", 50), ("Safari", 40), ("Firefox", 10)]),
        ("Linux", 10, [("Firefox", 55), ("Chrome", 45)]),
        ("Chrome OS", 5, [("Chrome", 100)]),
    ],
    ("mobile", 40): [
        ("Android", 55, [("Chrome Mobile", 75), ("Samsung Internet", 20), ("Firefox Mobile", 5)]),
        ("iOS", 45, [("Mobile Safari", 85), ("Chrome Mobile iOS", 15)]),
    ],
    ("tablet", 5): [
        ("iOS", 70, [("Mobile Safari", 100)]),
        ("Android", 30, [("Chrome Mobile", 100)]),
    ],
}

PAGEVIEWS_PER_SESSION = [(1, 50), (2, 20), (3, 11), (4, 7), (5, 5), (6, 3), (7, 2), (8, 2)]
HOUR_WEIGHTS = [2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 8, 8, 9, 9, 8, 7, 6, 6, 5, 4, 3, 3]
WEEKDAY_FACTOR = [1.08, 1.1, 1.1, 1.06, 1.0, 0.8, 0.86]  # Monday … Sunday, mean 1.0

CUSTOM_EVENTS = [  # (name, metadata, weight)
    ("signup", {"plan": "free", "source": "landing_page"}, 18),
    ("signup", {"plan": "pro", "source": "pricing_page"}, 8),
    ("signup", {"plan": "business", "source": "pricing_page"}, 3),
    ("signup", {"plan": "premium", "source": "landing_page"}, 1),
    ("download", {"file": "whitepaper.pdf"}, 12),
    ("download", {"file": "agent-linux.tar.gz"}, 8),
    ("cta_click", {"button": "hero"}, 15),
    ("cta_click", {"button": "pricing"}, 10),
    ("cta_click", {"button": "footer"}, 5),
    ("newsletter_subscribe", {}, 20),
]
PRODUCTS = [("Premium Plan", 2999, 40), ("Business Plan", 9900, 15), ("Starter Plan", 900, 30), ("Add-on Seats", 500, 15)]
CURRENCIES = [("USD", 1.0, 60), ("EUR", 0.92, 25), ("GBP", 0.79, 10), ("JPY", 1.5, 5)]  # JPY has no minor unit
QUANTITIES = [(1, 85), (2, 10), (3, 5)]
P_SECOND_SESSION = 0.05
P_CUSTOM = 0.10
P_PURCHASE = 0.02
P_RETURNING = 0.20

HMS = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]


def _cum(weights):
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _tsv_json(value) -> str:
    # COPY text format: backslashes would need escaping; our metadata has none.
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    assert "\\" not in text and "\t" not in text and "\n" not in text
    return text


class Model:
    """Precomputed line fragments and cumulative weights (so a row is a few concatenations)."""

    def __init__(self):
        self.page_prefix = [f"1\tpageview\t{p}\t{{}}\t{NULL}\t\t{NULL}\t\t" for p in PAGES]
        self.page_cum = _cum(PAGE_WEIGHTS)
        self.page_index = list(range(len(PAGES)))
        # referrer, source, utm_source, utm_medium, utm_campaign, utm_term, utm_content
        self.traffic = [f"{s[1]}\t{s[0]}\t" + "\t".join(s[2:7]) for s in SOURCES]
        self.traffic_cum = _cum([s[7] for s in SOURCES])
        envs, weights = [], []
        for country, cw in COUNTRIES:
            for (device, dw), oses in ENVIRONMENTS.items():
                for os_name, ow, browsers in oses:
                    for browser, bw in browsers:
                        envs.append(f"{country}\t{browser}\t{os_name}\t{device}")
                        weights.append(cw * dw * ow * bw)
        self.envs, self.env_cum = envs, _cum(weights)
        self.pv_counts = [n for n, _ in PAGEVIEWS_PER_SESSION]
        self.pv_cum = _cum([w for _, w in PAGEVIEWS_PER_SESSION])
        self.hour_base = [h * 3600 for h in range(24)]
        self.hour_cum = _cum(HOUR_WEIGHTS)
        # Custom events: (kind … product_name) prefix without the path, which is the current page.
        self.custom = [(f"2\t{name}\t", f"\t{_tsv_json(meta)}\t{NULL}\t\t{NULL}\t\t") for name, meta, _ in CUSTOM_EVENTS]
        self.custom_cum = _cum([w for *_, w in CUSTOM_EVENTS])
        purchases, pweights = [], []
        for product, base, pw in PRODUCTS:
            for currency, factor, cw in CURRENCIES:
                for qty, qw in QUANTITIES:
                    price = int(round(base * factor))
                    meta = _tsv_json({"billing": "monthly" if product != "Add-on Seats" else "one-time"})
                    purchases.append(("3\tpurchase\t", f"\t{meta}\t{price}\t{currency}\t{qty}\t{product}\t"))
                    pweights.append(pw * cw * qw)
        self.purchase, self.purchase_cum = purchases, _cum(pweights)


def events_per_visitor(model: Model, rng: random.Random, sample: int = 20000) -> float:
    """Measured on a sample with the same random process as ``day_lines``."""
    sink = []
    day_lines(model, rng, sink.append, site_id=0, hostname="x", sells=True, visitors=sample, day=datetime(2020, 1, 1, tzinfo=UTC),
              max_second=86399, pool=[1, 2, 3])  # fmt: skip
    return len(sink) / sample


def day_lines(model, rng, emit, *, site_id, hostname, sells, visitors, day, max_second, pool):
    """Emit COPY text lines for ``visitors`` visitors of one site on one UTC ``day``."""
    choices, rnd, bits = rng.choices, rng.random, rng.getrandbits
    prefix = day.strftime("%Y-%m-%d ")
    traffic = choices(model.traffic, cum_weights=model.traffic_cum, k=visitors)
    envs = choices(model.envs, cum_weights=model.env_cum, k=visitors)
    hours = choices(model.hour_base, cum_weights=model.hour_cum, k=visitors)
    pv_counts = choices(model.pv_counts, cum_weights=model.pv_cum, k=visitors)
    page_prefix, page_cum, page_index = model.page_prefix, model.page_cum, model.page_index
    for i in range(visitors):
        if rnd() < P_RETURNING:
            visitor = pool[int(rnd() * len(pool))]
        else:
            visitor = bits(62)
        sessions = 2 if rnd() < P_SECOND_SESSION else 1
        second = hours[i] + int(rnd() * 3600)
        env = envs[i]
        for s in range(sessions):
            tail = f"{site_id}\t{visitor}\t{bits(62)}\t{hostname}\t{traffic[i] if s == 0 else chr(9) * 6}\t{env}\n"
            n = pv_counts[i] if s == 0 else 1
            pages = choices(page_index, cum_weights=page_cum, k=n)
            custom_at = int(rnd() * n) if rnd() < P_CUSTOM else -1
            buy = sells and rnd() < P_PURCHASE
            path = PAGES[pages[0]]
            for j in range(n):
                if second > max_second:
                    break
                ts = prefix + HMS[second] + "+00"
                emit(f"{page_prefix[pages[j]]}{ts}\t{ts}\t{tail}")
                path = PAGES[pages[j]]
                second += 10 + int(rnd() * 230)
                if j == custom_at and second <= max_second:
                    head, rest = choices(model.custom, cum_weights=model.custom_cum)[0]
                    ts = prefix + HMS[second] + "+00"
                    emit(f"{head}{path}{rest}{ts}\t{ts}\t{tail}")
                    second += 5 + int(rnd() * 60)
            if buy and second <= max_second:
                head, rest = choices(model.purchase, cum_weights=model.purchase_cum)[0]
                ts = prefix + HMS[second] + "+00"
                emit(f"{head}{path}{rest}{ts}\t{ts}\t{tail}")
            second += 1800 + int(rnd() * 7200)  # the visitor's next visit starts after a 30-minute gap
            if second > max_second:
                break


def generate_lines(n: int, site_ids: dict, *, seed: int = 1, now: datetime | None = None, days: int = DAYS):
    """Yield exactly ``n`` COPY text lines, oldest day first, the last ones minutes before ``now``.

    Each past day gets the visitors that spread what is left of ``n`` over the days left (so the
    randomness of the model does not pile up); today, up to ``now``, gets the rest: visitors are
    added until it has at least that many events, then a uniform sample of them is kept, so the
    traffic runs up to the present minute instead of stopping where a running total hits ``n``."""
    rng = random.Random(seed)
    model = Model()
    now = now or datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    per_visitor = events_per_visitor(model, random.Random(seed + 1))
    weights = [WEEKDAY_FACTOR[(today - timedelta(days=d)).weekday()] for d in range(days)]
    today_share = _share_of_day(now - today)  # of a whole day's events that happen before now
    weights[0] *= max(today_share, 1e-6)
    visitors_per_day = n / per_visitor / sum(weights)
    generate_lines.visitors_per_day = visitors_per_day
    pools = {
        domain: [rng.getrandbits(62) for _ in range(max(10, int(visitors_per_day * share * 2)))] for domain, share, *_ in SITES
    }
    produced = 0
    carry = dict.fromkeys(pools, 0.0)
    buf: list[str] = []

    def one_day(day, max_second, visitors_total):
        for domain, share, _tz, sells in SITES:
            carry[domain] += visitors_total * share  # fractions carry over: small n stays unbiased
            visitors = int(carry[domain])
            carry[domain] -= visitors
            day_lines(model, rng, buf.append, site_id=site_ids[domain], hostname=domain, sells=sells, visitors=visitors,
                      day=day, max_second=max_second, pool=pools[domain])  # fmt: skip

    for d in range(days - 1, -1, -1):
        day = today - timedelta(days=d)
        buf.clear()
        left = n - produced
        if d:
            one_day(day, 86399, left / per_visitor * weights[d] / sum(weights[: d + 1]))
        else:
            max_second = min(int((now - day).total_seconds()) - 1, 86399)
            for _ in range(20):  # a few rounds reach the rest unless the day has barely begun
                if len(buf) >= left or max_second < 0:
                    break
                one_day(day, max_second, (left - len(buf)) / per_visitor / max(today_share, 1e-6) * 1.05 + 1)
            if len(buf) > left:
                buf[:] = rng.sample(buf, left)
        # Sites and sessions interleave within a day the way arrivals would: store in time order.
        buf.sort(key=_line_time)
        for line in buf:
            if produced >= n:
                return
            produced += 1
            yield line


def _share_of_day(elapsed: timedelta) -> float:
    """The expected share of a day's events before ``elapsed`` into it (visits start by HOUR_WEIGHTS)."""
    hours = elapsed.total_seconds() / 3600
    whole = int(hours)
    done = sum(HOUR_WEIGHTS[:whole]) + (HOUR_WEIGHTS[whole] * (hours - whole) if whole < 24 else 0)
    return done / sum(HOUR_WEIGHTS)


def _line_time(line: str) -> str:
    return line.split("\t", 9)[8]


def ensure_sites(reset: bool):
    """Create (or reuse) the bench sites; return {domain: id} and the main site's new raw key."""
    from django.db import connection, transaction

    from accounts.keys import create_api_key
    from accounts.models import Site
    from events.models import Event

    with transaction.atomic():
        if reset:
            if connection.vendor == "postgresql":
                with connection.cursor() as cur:
                    cur.execute(f"TRUNCATE {Event._meta.db_table}")
            else:
                Event.objects.all().delete()
        elif Event.objects.exists():
            raise SystemExit("the events table is not empty: pass --reset to replace its rows")
        ids = {}
        for domain, _share, tz, _sells in SITES:
            site, _ = Site.objects.get_or_create(domain=domain, defaults={"name": domain, "timezone": tz})
            ids[domain] = site.pk
        _, raw = create_api_key(site=Site.objects.get(pk=ids[MAIN_SITE]), name="bench")
    return ids, raw


def copy_postgres(lines, chunk_bytes=1 << 20, *, rebuild_indexes=True) -> int:
    """COPY the lines in one transaction.

    For speed (measured at 300k rows: 46k rows/s plain, 81k with the FK trigger off, 100k
    with indexes rebuilt afterwards) the load runs with ``session_replication_role =
    replica`` when we are a superuser (the rows reference sites we just created, so the
    skipped per-row FK check cannot fail), and with ``rebuild_indexes`` the table's
    secondary indexes are dropped and recreated from their own definitions afterwards.
    """
    from django.db import connection, transaction

    from events.models import Event

    table = Event._meta.db_table
    count = 0
    with transaction.atomic():
        with connection.cursor() as cur:
            pg = cur.cursor  # the psycopg cursor under Django's wrapper
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if cur.fetchone()[0]:
                cur.execute("SET LOCAL session_replication_role = replica")
            indexes = []
            if rebuild_indexes:
                cur.execute(
                    "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND i.schemaname = current_schema() "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
                    [table],
                )
                indexes = cur.fetchall()
                for name, _ in indexes:
                    cur.execute(f'DROP INDEX "{name}"')
            with pg.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                out = []
                size = 0
                for line in lines:
                    out.append(line)
                    size += len(line)
                    count += 1
                    if size >= chunk_bytes:
                        copy.write("".join(out))
                        out.clear()
                        size = 0
                if out:
                    copy.write("".join(out))
            cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for _, definition in indexes:
                # A partitioned table's index reads "ON ONLY": it would come back without its partitions' indexes.
                cur.execute(definition.replace(" ON ONLY ", " ON ", 1))
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")
    return count


def line_values(line: str) -> list:
    """A COPY text line → parameter values (for SQLite and tests)."""
    values = line.rstrip("\n").split("\t")
    out = []
    for column, value in zip(COLUMNS, values, strict=True):
        if value == NULL:
            out.append(None)
        elif column in ("occurred_at", "received_at"):
            out.append(value.removesuffix("+00"))  # Django stores naive UTC text in SQLite
        else:
            out.append(value)
    return out


def insert_sqlite(lines, batch=5000) -> int:
    from django.db import connection, transaction

    from events.models import Event

    sql = f"INSERT INTO {Event._meta.db_table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    count = 0
    rows = []
    with transaction.atomic(), connection.cursor() as cur:
        for line in lines:
            rows.append(line_values(line))
            if len(rows) >= batch:
                cur.executemany(sql, rows)
                count += len(rows)
                rows.clear()
        if rows:
            cur.executemany(sql, rows)
            count += len(rows)
    return count


def load(n: int, *, reset: bool = False, seed: int = 1, migrate: bool = True, verbosity: int = 1):
    """Migrate, create the sites, load ``n`` events; returns (count, seconds, raw key, site ids)."""
    from django.core.management import call_command
    from django.db import connection

    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    site_ids, raw = ensure_sites(reset)
    from events.partitions import ensure_partitions

    now = datetime.now(UTC)
    ensure_partitions(now, since=now - timedelta(days=DAYS + 1))  # PostgreSQL: the rows go to their months, not the default
    started = time.perf_counter()
    with Progress("generate", total=n, unit="event", enabled=verbosity > 0) as progress:
        lines = _counted(generate_lines(n, site_ids, seed=seed), progress)
        count = copy_postgres(lines, rebuild_indexes=n >= 500_000) if connection.vendor == "postgresql" else insert_sqlite(lines)
    elapsed = time.perf_counter() - started
    return count, elapsed, raw, site_ids


def _counted(lines, progress, step=10_000):
    """``lines`` as they are, telling ``progress`` every ``step`` lines."""
    n = 0
    for line in lines:
        yield line
        n += 1
        if n == step:
            progress.update(n)
            n = 0
    progress.update(n)


def rebuild_rollups(verbosity=1):
    """If the analytics app ships a rollup rebuild command, run it so queries start warm."""
    from django.core.management import call_command, get_commands

    for name in ("rebuild_rollups", "rollup", "build_rollups"):
        if name in get_commands():
            started = time.perf_counter()
            call_command(name)
            if verbosity:
                print(f"manage.py {name}: {time.perf_counter() - started:.1f} s")
            return name
    return None


def main(argv=None):
    from bench import env

    parser = argparse.ArgumentParser(prog="python -m bench generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--events", type=int, default=1_000_000, help="number of events (default 1,000,000)")
    parser.add_argument("--db", help="PostgreSQL database name on 127.0.0.1 (or a URL); default: DATABASE_URL")
    parser.add_argument("--reset", action="store_true", help="delete the existing events first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-rollups", action="store_true", help="skip the analytics rollup rebuild after loading")
    args = parser.parse_args(argv)

    import os

    url = env.database_url(args.db)
    os.environ["DATABASE_URL"] = url
    env.ensure_postgres_database(url)
    env.setup_django()
    from django.db import connection

    count, elapsed, raw, site_ids = load(args.events, reset=args.reset, seed=args.seed)
    vpd = getattr(generate_lines, "visitors_per_day", 0)
    print(f"loaded {count:,} events into {connection.settings_dict['NAME']} ({connection.vendor}) in {elapsed:.1f} s "
          f"= {count / elapsed:,.0f} events/s; ≈{vpd:,.0f} visitors/day over {DAYS} days, sites {site_ids}")  # fmt: skip
    if not args.no_rollups:
        rebuild_rollups()
    print(f"API key for {MAIN_SITE} (events:write, analytics:read; SECRET_KEY={os.environ['SECRET_KEY'][:12]}…):")
    print(raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
