"""Enrichment of tracker hits: user agent, bots, country, page path, referrer source, UTM.

Each function is pure and cheap: the user-agent and bot checks are LRU-cached (browsers
send the same few strings over and over), the country lookup is an in-memory table
shipped inside the ``iptocc`` wheel (no download at run time).
"""

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit

import iptocc
import ua_parser
from crawlerdetect import CrawlerDetect

from .parsers import CONTROL_CHARACTERS

MAX_PATH = 2000
MAX_REFERRER = 2000
MAX_SOURCE = 100
MAX_UTM = 200
MAX_USER_AGENT = 1000
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# Query parameters kept in the stored path; everything else (session tokens, e-mail
# addresses in reset links, search terms) is stripped.
KEPT_QUERY_PARAMS = frozenset(UTM_FIELDS) | {"ref"}


# --- User agent -------------------------------------------------------------------------


@dataclass(frozen=True)
class UserAgentInfo:
    browser: str
    os: str
    device: str  # "desktop", "mobile", "tablet" or "" when unknown


# ua-parser names the mobile build of a browser separately; people think of one product.
_BROWSER_NAMES = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome WebView",
    "Chromium": "Chromium",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
    "Samsung Internet": "Samsung Internet",
    "Yandex Browser": "Yandex Browser",
    "Other": "",
}
_OS_NAMES = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS", "Other": ""}
_MOBILE_OS = {"iOS", "Android", "Windows Phone", "KaiOS", "BlackBerry OS", "Firefox OS"}


def _device_class(ua: str, os_family: str, device_family: str) -> str:
    """desktop / mobile / tablet: ua-parser names devices but does not classify them."""
    lowered = ua.lower()
    if device_family == "iPad" or "tablet" in lowered or "ipad" in lowered or "kindle" in lowered or "silk/" in lowered:
        return "tablet"
    if os_family == "Android" and "mobile" not in lowered:
        return "tablet"
    if os_family in _MOBILE_OS or "mobi" in lowered or device_family == "iPhone":
        return "mobile"
    if os_family in {"", "Other"}:
        return ""
    return "desktop"


@lru_cache(maxsize=4096)
def parse_user_agent(ua: str) -> UserAgentInfo:
    """Browser, OS and device class of a user-agent string (ua-parser's maintained rules)."""
    ua = ua[:MAX_USER_AGENT]
    result = ua_parser.parse(ua)
    browser = result.user_agent.family if result.user_agent else "Other"
    os_family = result.os.family if result.os else "Other"
    device_family = result.device.family if result.device else "Other"
    return UserAgentInfo(
        browser=_BROWSER_NAMES.get(browser, browser)[:50],
        os=_OS_NAMES.get(os_family, os_family)[:50],
        device=_device_class(ua, os_family, device_family),
    )


# --- Bots -------------------------------------------------------------------------------

# Automation that crawler lists may miss: headless browsers and page-speed tools.
HEADLESS_MARKERS = ("headlesschrome", "phantomjs", "slimerjs", "electron/", "puppeteer", "playwright", "lighthouse",
                    "chrome-lighthouse", "pagespeed", "gtmetrix", "selenium", "webdriver", "cypress", "nightmare")  # fmt: skip
_crawler_detect = CrawlerDetect()


@lru_cache(maxsize=4096)
def is_bot(ua: str) -> bool:
    """True for crawlers, scripts and headless browsers; an empty user agent is a bot too."""
    ua = ua.strip()[:MAX_USER_AGENT]
    if not ua:
        return True
    lowered = ua.lower()
    if any(marker in lowered for marker in HEADLESS_MARKERS):
        return True
    return bool(_crawler_detect.isCrawler(ua))


# --- Country ----------------------------------------------------------------------------


def country_for_ip(ip: str) -> str:
    """ISO 3166-1 alpha-2 code of the IP's registration country, or "" (private, unknown, junk)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if not address.is_global:
        return ""
    code = iptocc.country_code(str(address))
    return code.upper() if code and len(code) == 2 and code.isalpha() else ""


# --- Hostnames and URLs -----------------------------------------------------------------


def bare_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def host_belongs_to(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or one of its subdomains (``www.`` ignored on both)."""
    host, domain = bare_host(host), bare_host(domain)
    return bool(host) and (host == domain or host.endswith("." + domain))


@dataclass(frozen=True)
class Page:
    hostname: str
    path: str
    utm: dict
    ref: str


def parse_page_url(url: str, *, keep_hash: bool = False) -> Page | None:
    """The stored form of a page URL, or None when it is not an http(s) URL with a host."""
    if not isinstance(url, str) or len(url) > MAX_PATH * 2:
        return None
    try:
        parts = urlsplit(url.strip())
        hostname = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a junk port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not hostname or any(c.isspace() for c in hostname):
        return None
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=False) if k in KEPT_QUERY_PARAMS]
    path = parts.path or "/"
    if query:
        path += "?" + urlencode(query)
    if keep_hash and parts.fragment:
        path += "#" + parts.fragment
    # Decoded values lose their control characters: '%00' would be a NUL, which PostgreSQL text refuses.
    values = {k: CONTROL_CHARACTERS.sub("", v) for k, v in query}
    utm = {name: values.get(name, "").strip()[:MAX_UTM] for name in UTM_FIELDS}
    return Page(hostname=hostname.rstrip("."), path=path[:MAX_PATH], utm=utm, ref=values.get("ref", "").strip())


# --- Referrer → source ------------------------------------------------------------------

# Search engines and sites that run under many country domains: matched on the label
# before the public suffix, so www.google.com, google.de and google.co.uk are all "Google".
SOURCE_BY_BRAND = {
    "google": "Google", "bing": "Bing", "yahoo": "Yahoo", "yandex": "Yandex", "baidu": "Baidu",
    "duckduckgo": "DuckDuckGo", "ecosia": "Ecosia", "qwant": "Qwant", "naver": "Naver", "seznam": "Seznam",
    "startpage": "Startpage", "ask": "Ask", "aol": "AOL", "sogou": "Sogou", "amazon": "Amazon",
    "pinterest": "Pinterest", "ebay": "eBay", "facebook": "Facebook", "wikipedia": "Wikipedia",
}  # fmt: skip
# Exact hosts and their subdomains (seeded from Matomo's CC0 search-engine and social lists).
SOURCE_BY_DOMAIN = {
    "mail.google.com": "Gmail", "news.google.com": "Google News", "play.google.com": "Google Play",
    "search.brave.com": "Brave", "duck.com": "DuckDuckGo", "kagi.com": "Kagi", "search.yahoo.com": "Yahoo",
    "fb.com": "Facebook", "fb.me": "Facebook", "messenger.com": "Facebook",
    "instagram.com": "Instagram", "threads.net": "Threads", "threads.com": "Threads",
    "t.co": "Twitter", "twitter.com": "Twitter", "x.com": "Twitter",
    "linkedin.com": "LinkedIn", "lnkd.in": "LinkedIn",
    "reddit.com": "Reddit", "redd.it": "Reddit",
    "youtube.com": "YouTube", "youtu.be": "YouTube",
    "news.ycombinator.com": "Hacker News", "github.com": "GitHub", "gitlab.com": "GitLab",
    "stackoverflow.com": "Stack Overflow", "tiktok.com": "TikTok",
    "t.me": "Telegram", "telegram.org": "Telegram", "web.telegram.org": "Telegram",
    "whatsapp.com": "WhatsApp", "wa.me": "WhatsApp",
    "medium.com": "Medium", "substack.com": "Substack", "mastodon.social": "Mastodon", "bsky.app": "Bluesky",
    "vk.com": "VKontakte", "producthunt.com": "Product Hunt", "quora.com": "Quora",
    "discord.com": "Discord", "discordapp.com": "Discord", "slack.com": "Slack",
    "chatgpt.com": "ChatGPT", "chat.openai.com": "ChatGPT", "perplexity.ai": "Perplexity",
    "outlook.live.com": "Outlook.com", "lobste.rs": "Lobsters", "dev.to": "DEV",
}  # fmt: skip
# utm_source / ref values people actually type.
SOURCE_ALIASES = {
    "fb": "Facebook", "ig": "Instagram", "x": "Twitter", "tw": "Twitter", "hn": "Hacker News",
    "yt": "YouTube", "li": "LinkedIn", "newsletter": "Newsletter", "email": "Email",
}  # fmt: skip
_KNOWN_NAMES = [*SOURCE_BY_BRAND.values(), *SOURCE_BY_DOMAIN.values()]
_SOURCE_BY_NAME = {name.lower().replace(" ", ""): name for name in _KNOWN_NAMES}
_SOURCE_BY_NAME.update({name.lower(): name for name in _KNOWN_NAMES})
_SOURCE_BY_NAME.update({brand: name for brand, name in SOURCE_BY_BRAND.items()})
_SOURCE_BY_NAME.update(SOURCE_ALIASES)

# Second-level labels of country suffixes (co.uk, com.au, …): skipped when finding the brand.
_SUFFIX_LABELS = {"co", "com", "org", "net", "gov", "edu", "ac", "or", "ne", "go"}

# Well-known referrer spam (from the public-domain referrer-spam lists). Extend with the
# REFERRER_SPAM_DOMAINS setting.
REFERRER_SPAM = frozenset({
    "semalt.com", "semalt.semalt.com", "buttons-for-website.com", "buttons-for-your-website.com", "darodar.com",
    "ilovevitaly.com", "ilovevitaly.ru", "priceg.com", "blackhatworth.com", "hulfingtonpost.com", "best-seo-offer.com",
    "best-seo-solution.com", "free-social-buttons.com", "social-buttons.com", "simple-share-buttons.com",
    "get-free-traffic-now.com", "free-share-buttons.com", "trafficmonetize.org", "webmonetizer.net", "4webmasters.org",
    "7makemoneyonline.com", "100dollars-seo.com", "econom.co", "savetubevideo.com", "kambasoft.com",
    "screentoolkit.com", "o-o-6-o-o.com", "o-o-8-o-o.com", "humanorightswatch.org", "event-tracking.com",
    "floating-share-buttons.com", "get-free-social-traffic.com", "ranksonic.info", "rank-checker.online",
    "seo-platform.com", "site-auditor.online", "traffic2money.com", "uptime-as.net", "videos-for-your-business.com",
    "website-analyzer.info", "success-seo.com", "cenoval.ru", "cenokos.ru", "vitaly.com", "bestwebsitesawards.com",
    "keywords-monitoring-your-success.com", "fix-website-errors.com", "copyrightclaims.org", "erot.co",
})  # fmt: skip


def referrer_host(referrer: str | None) -> str:
    """The lower-case host of an http(s) referrer URL, or "" when there is none or it is junk."""
    if not referrer or not isinstance(referrer, str) or len(referrer) > MAX_REFERRER * 2:
        return ""
    try:
        parts = urlsplit(referrer.strip())
        host = parts.hostname or ""
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or any(c.isspace() for c in host):
        return ""
    return host.rstrip(".")


def is_referrer_spam(host: str, extra: frozenset | tuple = ()) -> bool:
    host = bare_host(host)
    for domain in (REFERRER_SPAM, extra):
        if host in domain or any(host.endswith("." + d) for d in domain):
            return True
    return False


def stored_referrer(referrer: str) -> str:
    """Host and path of the referrer: its query string may carry personal data."""
    parts = urlsplit(referrer.strip())
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"[:MAX_REFERRER]


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or host.endswith(".local"):
        return True
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False


def source_for_host(host: str) -> str:
    """``www.google.com`` and ``google.de`` → "Google"; unknown hosts are their bare hostname."""
    host = bare_host(host)
    for prefix in ("m.", "l.", "lm.", "mobile."):
        if host.startswith(prefix) and host.count(".") >= 2:
            host = host[len(prefix) :]
            break
    labels = host.split(".")
    for start in range(len(labels)):
        candidate = ".".join(labels[start:])
        if candidate in SOURCE_BY_DOMAIN:
            return SOURCE_BY_DOMAIN[candidate]
    # The brand is the label before the public suffix: google.com, google.de, google.co.uk.
    rest = labels[:-1]
    while len(rest) > 1 and rest[-1] in _SUFFIX_LABELS:
        rest = rest[:-1]
    if rest and rest[-1] in SOURCE_BY_BRAND:
        return SOURCE_BY_BRAND[rest[-1]]
    return host[:MAX_SOURCE]


def source_for_tag(tag: str) -> str:
    """A ``utm_source`` or ``ref`` value: known names normalised ("google" → "Google"), others kept."""
    tag = tag.strip()
    lowered = tag.lower()
    if lowered in _SOURCE_BY_NAME:
        return _SOURCE_BY_NAME[lowered]
    if "." in lowered and " " not in lowered and "/" not in lowered:
        return source_for_host(lowered)
    return tag[:MAX_SOURCE]


def traffic_source(*, referrer_host: str, page: Page, site_domain: str) -> str:
    """``ref`` and ``utm_source`` beat the Referer; same-site and local referrers are no source."""
    tag = page.ref or page.utm.get("utm_source", "")
    if tag:
        return source_for_tag(tag)
    if not referrer_host or _is_local(referrer_host):
        return ""
    if host_belongs_to(referrer_host, site_domain) or bare_host(referrer_host) == bare_host(page.hostname):
        return ""
    return source_for_host(referrer_host)
