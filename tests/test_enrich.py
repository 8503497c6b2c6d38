"""Enrichment: user agents (a corpus of real browsers and bots), country, path, referrer source, UTM."""

from pathlib import Path

import pytest

from events import enrich

DATA = Path(__file__).parent / "data"


def _lines(name):
    return [line.rstrip("\n") for line in (DATA / name).open(encoding="utf-8") if line.strip() and not line.startswith("#")]


BROWSERS = [tuple(line.split("\t", 3)) for line in _lines("browser_user_agents.tsv")]
BOTS = _lines("bot_user_agents.txt")


def test_corpora_are_big_enough():
    assert len(BROWSERS) >= 50 and len(BOTS) >= 50
    assert len({ua for *_, ua in BROWSERS}) == len(BROWSERS) and len(set(BOTS)) == len(BOTS)


@pytest.mark.parametrize("browser, os, device, ua", BROWSERS, ids=[f"{b[0]}-{b[1]}-{i}" for i, b in enumerate(BROWSERS)])
def test_real_browsers_are_not_bots_and_are_named(browser, os, device, ua):
    assert not enrich.is_bot(ua)
    assert enrich.parse_user_agent(ua) == enrich.UserAgentInfo(browser=browser, os=os, device=device)


@pytest.mark.parametrize("ua", BOTS)
def test_bots_are_bots(ua):
    assert enrich.is_bot(ua)


def test_mobile_builds_are_the_same_browser():
    names = {enrich.parse_user_agent(ua).browser for browser, _, _, ua in BROWSERS if browser in {"Chrome", "Safari", "Firefox"}}
    assert names == {"Chrome", "Safari", "Firefox"}
    assert {device for *_, device, _ in BROWSERS} >= {"desktop", "mobile", "tablet"}


@pytest.mark.parametrize("ua", ["", "   ", "Mozilla/5.0"[:0]])
def test_missing_user_agent_is_a_bot(ua):
    assert enrich.is_bot(ua)


def test_absurd_user_agents_are_handled():
    assert enrich.parse_user_agent("x" * 100_000).browser == ""
    assert enrich.parse_user_agent("\u2603 snowman").device == ""


# --- Country ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip, country",
    [
        ("8.8.8.8", "US"),
        ("81.2.69.142", "GB"),
        ("80.128.0.1", "DE"),
        ("1.1.1.1", "AU"),
        ("2a00:1450:4001::1", "IE"),
        ("127.0.0.1", ""),
        ("10.1.2.3", ""),
        ("192.168.1.1", ""),
        ("::1", ""),
        ("", ""),
        ("not an ip", ""),
    ],
)
def test_country_from_ip(ip, country):
    assert enrich.country_for_ip(ip) == country


# --- Page URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, path",
    [
        ("https://example.com", "/"),
        ("https://example.com/", "/"),
        ("https://example.com/pricing?plan=pro&email=a@b.c", "/pricing"),
        ("https://example.com/p?utm_source=hn&token=secret&ref=producthunt", "/p?utm_source=hn&ref=producthunt"),
        ("https://example.com/p?utm_campaign=go&utm_term=x&utm_medium=social", "/p?utm_campaign=go&utm_term=x&utm_medium=social"),
        ("https://example.com/docs#install", "/docs"),
        ("http://EXAMPLE.com:8080/a/b/", "/a/b/"),
    ],
)
def test_path_keeps_only_utm_and_ref(url, path):
    assert enrich.parse_page_url(url).path == path


def test_hash_routing_keeps_the_fragment():
    assert enrich.parse_page_url("https://example.com/app#/settings", keep_hash=True).path == "/app#/settings"


def test_utm_fields_are_read_from_the_url():
    page = enrich.parse_page_url(
        "https://example.com/?utm_source=news&utm_medium=email&utm_campaign=nov&utm_term=t&utm_content=c"
    )
    assert page.utm == {"utm_source": "news", "utm_medium": "email", "utm_campaign": "nov", "utm_term": "t", "utm_content": "c"}


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "javascript:alert(1)",
        "ftp://example.com/",
        "file:///etc/passwd",
        "https://",
        "https:///x",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://[::1/",
        "//example.com/",
        "",
    ],
)
def test_invalid_urls(url):
    assert enrich.parse_page_url(url) is None


@pytest.mark.parametrize(
    "host, domain, belongs",
    [
        ("example.com", "example.com", True),
        ("www.example.com", "example.com", True),
        ("example.com", "www.example.com", True),
        ("blog.example.com", "example.com", True),
        ("a.b.example.com", "example.com", True),
        ("notexample.com", "example.com", False),
        ("example.com.evil.org", "example.com", False),
        ("example.org", "example.com", False),
        ("", "example.com", False),
    ],
)
def test_host_belongs_to_the_site(host, domain, belongs):
    assert enrich.host_belongs_to(host, domain) is belongs


# --- Referrer → source ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, source",
    [
        ("www.google.com", "Google"),
        ("google.de", "Google"),
        ("www.google.co.uk", "Google"),
        ("google.com.au", "Google"),
        ("mail.google.com", "Gmail"),
        ("www.bing.com", "Bing"),
        ("duckduckgo.com", "DuckDuckGo"),
        ("yandex.ru", "Yandex"),
        ("search.yahoo.co.jp", "Yahoo"),
        ("www.ecosia.org", "Ecosia"),
        ("search.brave.com", "Brave"),
        ("m.facebook.com", "Facebook"),
        ("l.facebook.com", "Facebook"),
        ("t.co", "Twitter"),
        ("x.com", "Twitter"),
        ("www.linkedin.com", "LinkedIn"),
        ("old.reddit.com", "Reddit"),
        ("news.ycombinator.com", "Hacker News"),
        ("github.com", "GitHub"),
        ("en.wikipedia.org", "Wikipedia"),
        ("m.youtube.com", "YouTube"),
        ("chatgpt.com", "ChatGPT"),
        ("www.someblog.org", "someblog.org"),
        ("blog.someone.dev", "blog.someone.dev"),
    ],
)
def test_referrer_hosts_are_normalised(host, source):
    assert enrich.source_for_host(host) == source


def _source(referrer, url="https://example.com/", domain="example.com"):
    page = enrich.parse_page_url(url)
    return enrich.traffic_source(referrer_host=enrich.referrer_host(referrer), page=page, site_domain=domain)


@pytest.mark.parametrize(
    "referrer, url, source",
    [
        ("https://www.google.com/search?q=x", "https://example.com/", "Google"),
        ("https://example.com/other", "https://example.com/", ""),  # same site
        ("https://www.example.com/", "https://example.com/", ""),
        ("https://docs.example.com/", "https://example.com/", ""),  # a subdomain of the site
        ("http://localhost:3000/", "https://example.com/", ""),
        ("http://192.168.0.10/", "https://example.com/", ""),
        ("", "https://example.com/", ""),
        ("android-app://com.google.android.gm/", "https://example.com/", ""),
        ("https://www.google.com/", "https://example.com/?utm_source=newsletter", "Newsletter"),  # utm_source beats Referer
        ("https://www.google.com/", "https://example.com/?utm_source=fb", "Facebook"),
        ("", "https://example.com/?utm_source=google", "Google"),
        ("", "https://example.com/?utm_source=twitter.com", "Twitter"),
        ("", "https://example.com/?utm_source=Spring%20Sale", "Spring Sale"),
        ("https://t.co/abc", "https://example.com/?ref=producthunt", "Product Hunt"),  # ref too
    ],
)
def test_traffic_source(referrer, url, source):
    assert _source(referrer, url) == source


@pytest.mark.parametrize(
    "host, spam",
    [
        ("semalt.com", True),
        ("www.semalt.com", True),
        ("x.buttons-for-website.com", True),
        ("google.com", False),
        ("notsemalt.com", False),
    ],
)
def test_referrer_spam(host, spam):
    assert enrich.is_referrer_spam(host) is spam


def test_referrer_spam_list_can_be_extended():
    assert enrich.is_referrer_spam("spam.example", ("spam.example",))


def test_stored_referrer_has_no_query_or_credentials():
    assert enrich.stored_referrer("https://user:pw@www.google.com/search?q=my+name") == "https://www.google.com/search"
