"""The dashboard's reports: each a card of tabs, each tab one breakdown of the API.

A tab names the API dimension it breaks down by and the metrics it asks for: the card shows
the first metric with a proportional bar and its share of the total; the details view shows
every metric of ``detail_metrics``.
"""

from dataclasses import dataclass

CARD_ROWS = 9  # rows on a card, as Plausible shows
DETAIL_ROWS = 100
EXPORT_ROWS = 300  # rows of each CSV in the ZIP

METRIC_LABELS = {
    "unique_visitors": "Visitors",
    "visits": "Visits",
    "page_views": "Pageviews",
    "events": "Events",
    "bounce_rate": "Bounce rate",
    "visit_duration": "Visit duration",
    "views_per_visit": "Views per visit",
    "purchases": "Purchases",
    "revenue": "Revenue",
    "average_order_value": "Avg. order",
    "conversion_rate": "Conversion rate",
}
VISIT_DETAILS = ("visits", "bounce_rate", "visit_duration")


@dataclass(frozen=True)
class Tab:
    key: str  # the URL value (``tab=<report>:<key>``)
    label: str
    dimension: str  # the API's breakdown
    column: str  # header of the value column
    metrics: tuple  # on the card: the first is drawn as the bar and sorts the rows
    detail_metrics: tuple
    empty: str = "(none)"  # how an empty value reads
    metric_labels: tuple = ()  # (metric, label) overrides for this tab

    def label_of(self, metric: str) -> str:
        return dict(self.metric_labels).get(metric, METRIC_LABELS[metric])


@dataclass(frozen=True)
class Report:
    key: str
    title: str
    tabs: tuple
    menu: tuple = ()  # tab keys shown in a "more" menu instead of as tabs

    @property
    def default(self) -> str:
        return self.tabs[0].key

    def tab(self, key: str) -> Tab:
        return next((t for t in self.tabs if t.key == key), self.tabs[0])

    @property
    def keys(self) -> tuple:
        return tuple(t.key for t in self.tabs)


def _visitors(key, label, dimension, column, empty="(none)", extra=("page_views",)):
    return Tab(key, label, dimension, column, ("unique_visitors",), ("unique_visitors", *extra, *VISIT_DETAILS), empty)


_DIRECT = "Direct / None"
SOURCES = Report(
    "sources",
    "Top sources",
    (
        _visitors("source", "Sources", "source", "Source", _DIRECT, ()),
        _visitors("referrer", "Referrers", "referrer", "Referrer", _DIRECT, ()),
        _visitors("utm_medium", "UTM medium", "utm_medium", "UTM medium", extra=()),
        _visitors("utm_source", "UTM source", "utm_source", "UTM source", extra=()),
        _visitors("utm_campaign", "UTM campaign", "utm_campaign", "UTM campaign", extra=()),
        _visitors("utm_term", "UTM term", "utm_term", "UTM term", extra=()),
        _visitors("utm_content", "UTM content", "utm_content", "UTM content", extra=()),
    ),
    menu=("utm_medium", "utm_source", "utm_campaign", "utm_term", "utm_content"),
)
PAGES = Report(
    "pages",
    "Top pages",
    (
        # Ordered by pageviews: a count the rollups add up, so only the top pages' visitor sets are merged.
        Tab(
            "page",
            "Top pages",
            "page",
            "Page",
            ("page_views", "unique_visitors"),
            ("page_views", "unique_visitors", *VISIT_DETAILS),
        ),
        Tab(
            "entry",
            "Entry pages",
            "entry_page",
            "Entry page",
            ("visits",),
            ("visits", "bounce_rate", "visit_duration", "views_per_visit"),
            metric_labels=(("visits", "Entrances"),),
        ),
        Tab(
            "exit",
            "Exit pages",
            "exit_page",
            "Exit page",
            ("visits",),
            ("visits", "bounce_rate", "visit_duration", "views_per_visit"),
            metric_labels=(("visits", "Exits"),),
        ),
    ),
)
LOCATIONS = Report(
    "locations",
    "Locations",
    (
        _visitors("map", "Map", "country", "Country", "Unknown", ()),
        _visitors("countries", "Countries", "country", "Country", "Unknown", ()),
    ),
)
DEVICES = Report(
    "devices",
    "Devices",
    (
        _visitors("browser", "Browser", "browser", "Browser", "Unknown", ()),
        _visitors("os", "OS", "os", "Operating system", "Unknown", ()),
        _visitors("device", "Size", "device", "Device", "Unknown", ()),
    ),
)
EVENTS = Report(
    "events",
    "Events",
    (
        Tab(
            "name",
            "Events",
            "event_name",
            "Event",
            ("unique_visitors", "events"),
            ("unique_visitors", "events"),
            metric_labels=(("unique_visitors", "Uniques"), ("events", "Total")),
        ),
    ),
)
REVENUE = Report(
    "revenue",
    "Revenue",
    (
        Tab(
            "currency",
            "Currencies",
            "currency",
            "Currency",
            ("purchases", "revenue"),
            ("purchases", "revenue", "average_order_value", "unique_visitors"),
        ),
        Tab(
            "product",
            "Products",
            "product_name",
            "Product",
            ("purchases", "revenue"),
            ("purchases", "revenue", "unique_visitors"),
        ),
    ),
)
REPORTS = {r.key: r for r in (SOURCES, PAGES, LOCATIONS, DEVICES, EVENTS, REVENUE)}
PAGEVIEW_EVENT = "pageview"  # the tracker's page views: the Events report lists the other names


def metadata_tab(key: str) -> Tab:
    """A tab of the Events report once one event is chosen: its visitors by one metadata key."""
    return Tab(
        f"metadata.{key}",
        key,
        f"metadata.{key}",
        key,
        ("unique_visitors", "events"),
        ("unique_visitors", "events"),
        metric_labels=(("unique_visitors", "Uniques"), ("events", "Total")),
    )
