"""What each panel shows, computed from one engine answer: the view renders it, the template
only prints. Every number keeps its raw value beside its display text (``data-value``), and
every panel carries the API parameters it asked (``data-query``)."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from . import data, numbers
from .countries import NAMES as COUNTRY_NAMES
from .reports import CARD_ROWS, EVENTS, PAGEVIEW_EVENT, REVENUE, Report, Tab, metadata_tab
from .state import GRAPH_METRICS, DashboardState, allowed_intervals

STATS_METRICS = (*GRAPH_METRICS, "purchases", "revenue")
SHARED_METRICS = {"unique_visitors", "visits", "page_views", "events", "purchases"}  # a row's share of the total


def query_string(params: dict) -> str:
    return urlencode(params)


@dataclass
class Cell:
    metric: str
    label: str
    value: object
    text: str
    exact: str
    estimated: bool = False


@dataclass
class Row:
    value: str | None
    label: str
    cells: list
    bar: float  # percent of the widest row
    share: str | None
    filter_url: str
    title: str = ""


@dataclass
class ReportView:
    report: Report
    tab: Tab
    tabs: list  # (key, label, url, selected)
    menu: list  # (key, label, url, selected) in a "more" menu
    rows: list
    headers: list  # (metric, label, sort url, sorted)
    query: str
    column: str
    total: object = None
    empty: bool = False
    note: str = ""
    subject: str = ""  # the chosen event of the Events report
    clear_url: str = ""
    map: dict = field(default_factory=dict)
    menu_label: str = "Campaigns"


def _label(tab: Tab, value) -> str:
    if value in (None, ""):
        return tab.empty
    if tab.dimension == "country":
        return COUNTRY_NAMES.get(value, value)
    return value


def estimates(result: dict) -> tuple[set, str]:
    """The paths of the answer's estimated numbers, and how to say so in a tooltip."""
    flagged = result.get("estimated") or {}
    error = flagged.get("relative_standard_error", 0)
    return set(flagged.get("values", ())), f"an estimate (HyperLogLog, ±{error * 100:.1f}% standard error)"


def _cells(metrics, values: dict, tab: Tab, path: str = "", estimated=(), note="") -> list[Cell]:
    out = []
    for m in metrics:
        value = values.get(m)
        cell = Cell(m, tab.label_of(m), value, numbers.display(value, m), numbers.exact(value, m))
        if f"{path}{m}" in estimated:
            cell.estimated, cell.text, cell.exact = True, "≈" + cell.text, f"{cell.exact}: {note}"
        out.append(cell)
    return out


def events_tabs(state: DashboardState) -> tuple[str | None, list[Tab]]:
    """The Events report's tabs: event names, or the chosen event's metadata keys."""
    chosen = state.filter_value("event_name")
    if chosen is None or chosen == PAGEVIEW_EVENT:
        return None, list(EVENTS.tabs)
    return chosen, [metadata_tab(key) for key in data.metadata_keys(state.site, chosen)]


def choose_tab(state: DashboardState, report: Report, tab_key: str | None = None) -> tuple[str | None, list, Tab | None]:
    """(the chosen event or None, the report's tabs, the tab to show): ``tab_key`` if it is one of
    them, else the one in the URL, else the first. No tab: an event without properties."""
    subject, tabs = (None, list(report.tabs))
    if report is EVENTS:
        subject, tabs = events_tabs(state)
    if not tabs:
        return subject, tabs, None
    keys = tuple(t.key for t in tabs)
    key = tab_key if tab_key in keys else state.tab(report.key, keys, keys[0])
    return subject, tabs, next(t for t in tabs if t.key == key)


def report_view(state: DashboardState, report: Report, *, rows=CARD_ROWS, metrics=None, search="", tab_key=None) -> ReportView:
    """One breakdown: the top ``rows`` values of the chosen tab, with their share of the total."""
    subject, tabs, tab = choose_tab(state, report, tab_key)
    if tab is None:
        return ReportView(report, EVENTS.tabs[0], [], [], [], [], "", "", empty=True, subject=subject,
                          note="This event has no properties.", clear_url=state.url())  # fmt: skip
    metrics = tuple(metrics or tab.metrics)
    # Rows that are not what the report is about: page views among the events, and the events
    # that were not purchases (no currency, no product) in the revenue report.
    hidden = {PAGEVIEW_EVENT} if report is EVENTS and subject is None else {None} if report is REVENUE else set()
    limit = rows + 1 if hidden else rows
    if tab.key == "map":
        limit = 300  # every country, for the colours
    extra = (data.Filter(data.parse_dimension(tab.dimension, "filters"), "~", search),) if search else ()
    params = state.api_params(metrics=metrics, breakdown=tab.dimension, limit=limit, extra_filters=extra)
    result = data.analytics(state.site, params)
    first = metrics[0]
    total = result["data"].get(first)
    estimated, note = estimates(result)
    breakdown = [(i, r) for i, r in enumerate(result["breakdown"]) if r["value"] not in hidden]
    if tab.key != "map":
        breakdown = breakdown[: max(rows, 0)]
    widest = max((_bar_value(r.get(first)) for _, r in breakdown), default=0) or 1
    out_rows = []
    for i, r in breakdown:
        value = r["value"]
        share = None
        if first in SHARED_METRICS and isinstance(total, int) and total:
            share = f"{r[first] / total * 100:.0f}%" if r[first] / total >= 0.01 else "<1%"
        out_rows.append(
            Row(
                value=value,
                label=_label(tab, value),
                cells=_cells(metrics, r, tab, f"breakdown.{i}.", estimated, note),
                bar=round(_bar_value(r.get(first)) / widest * 100, 1),
                share=share,
                filter_url=state.with_filter(tab.dimension, "==", value or ""),
                title=value or "",
            )
        )
    view = ReportView(
        report=report,
        tab=tab,
        tabs=[(t.key, t.label, state.tab_url(report.key, t.key), t.key == tab.key) for t in tabs if t.key not in report.menu],
        menu=[(t.key, t.label, state.tab_url(report.key, t.key), t.key == tab.key) for t in tabs if t.key in report.menu],
        rows=out_rows,
        headers=[(m, tab.label_of(m)) for m in metrics],
        query=query_string(params),
        column=tab.column,
        total=total,
        empty=not out_rows,
        subject=subject or "",
    )
    if subject:
        view.clear_url = state.without_filter(next(i for i, f in enumerate(state.filters) if f.dimension.name == "event_name"))
    if tab.key in report.menu:
        view.menu_label = tab.label
    if tab.dimension == "country":
        view.map = {r.value: [r.cells[0].value, r.label, r.filter_url] for r in out_rows if r.value}
    return view


def _bar_value(value) -> float:
    if isinstance(value, dict):
        return max(value.values(), default=0)
    return value or 0


# --- top stats and graph ---------------------------------------------------------------------


def _bucket_label(now_local: datetime, interval: str, start: date) -> str:
    """The series label of the bucket holding ``now`` (the engine's labels: hours as local ISO
    datetimes; days, weeks and months as their first day in range)."""
    day = now_local.date()
    if interval == "hour":
        return now_local.replace(minute=0, second=0, microsecond=0, tzinfo=None).isoformat()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    return max(day, start).isoformat()


def stats_view(state: DashboardState, *, now: datetime | None = None) -> dict:
    """The top stats cards and the graph's series (of every card's metric, so a card click
    re-plots without a request), with the comparison period's totals and series."""
    params = state.api_params(metrics=STATS_METRICS, interval=True, compare=True)
    result = data.analytics(state.site, params)
    comparison = result.get("comparison")
    totals = result["data"]
    previous = comparison["data"] if comparison else {}
    has_purchases = bool(totals.get("purchases") or previous.get("purchases"))
    estimated, note = estimates(result)
    cards = []
    for metric, (label, _) in GRAPH_METRICS.items():
        if metric == "conversion_rate" and not has_purchases:
            continue
        value, before = totals.get(metric), previous.get(metric) if comparison else None
        cards.append(
            {
                "metric": metric,
                "label": label,
                "value": value,
                "text": numbers.display(value, metric),
                "exact": numbers.exact(value, metric) + (f", {note}" if f"data.{metric}" in estimated else ""),
                "estimated": f"data.{metric}" in estimated,
                "previous": before,
                "previous_text": numbers.display(before, metric) if comparison else "",
                "change": numbers.change(value, before, metric) if comparison else None,
                "selected": metric == state.metric,
                "url": state.url(metric=metric),
            }
        )
    revenue = []  # one line per currency, never summed across currencies: the most purchases first
    if has_purchases:
        amounts = totals.get("revenue", {})
        for currency in sorted(amounts, key=lambda c: (-amounts[c], c)):
            amount = amounts[currency]
            before = previous.get("revenue", {}).get(currency) if comparison else None
            revenue.append(
                {
                    "currency": currency,
                    "value": amount,
                    "text": numbers.money_compact(amount, currency),
                    "exact": numbers.money(amount, currency) + (f", before {numbers.money(before, currency)}" if before else ""),
                    "change": numbers.change(amount, before, "purchases") if before is not None else None,
                }
            )
    tz = ZoneInfo(state.site.timezone)
    now_local = (now or datetime.now(tz)).astimezone(tz)
    current = _bucket_label(now_local, state.interval, state.range.start)
    labels = [p["date"] for p in result["series"]]
    graph = {
        "interval": state.interval,
        "metric": state.metric,
        "labels": labels,
        "series": {m: [p[m] for p in result["series"]] for m in GRAPH_METRICS},
        "incomplete": labels.index(current) if current in labels else None,
        "estimated": sorted(estimated),
        "estimate_note": note,
        "comparison": None,
        "names": {m: names[1] for m, names in GRAPH_METRICS.items()},
    }
    if comparison:
        graph["comparison"] = {
            "labels": [p["date"] for p in comparison["series"]],
            "series": {m: [p[m] for p in comparison["series"]] for m in GRAPH_METRICS},
            "period": comparison["period"],
        }
    return {
        "cards": cards,
        "revenue": revenue,
        "graph": graph,
        "query": query_string(params),
        "comparison_period": comparison["period"] if comparison else None,
        "metric_label": GRAPH_METRICS[state.metric][1],
        "card_count": len(cards) + bool(revenue),
        "card_half": (len(cards) + bool(revenue) + 1) // 2,
        "intervals": [(i, state.url(interval=i), i == state.interval) for i in allowed_intervals(state.range.days)],
    }
