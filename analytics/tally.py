"""``Tally``: the mergeable sums behind every metric.

Raw scans and rollups both produce tallies keyed by (bucket, dimension value); totals,
series and breakdowns merge them and only then turn sums into metrics, so every metric
is computed the same way whatever the source. Ratios are rounded to two decimals.
"""

from dataclasses import dataclass, field

from .sketch import VisitorSketch


@dataclass
class Tally:
    page_views: int = 0
    events: int = 0
    purchases: int = 0
    revenue: dict = field(default_factory=dict)  # currency → minor units (price × quantity)
    orders: dict = field(default_factory=dict)  # currency → purchase events
    visitors: VisitorSketch = field(default_factory=VisitorSketch)
    buyers: VisitorSketch = field(default_factory=VisitorSketch)
    visits: int = 0
    bounces: int = 0
    duration_us: int = 0  # sum over visits of (last − first event time), microseconds
    visit_page_views: int = 0

    def merge(self, other: "Tally") -> "Tally":
        self.page_views += other.page_views
        self.events += other.events
        self.purchases += other.purchases
        for cur, amount in other.revenue.items():
            self.revenue[cur] = self.revenue.get(cur, 0) + amount
        for cur, n in other.orders.items():
            self.orders[cur] = self.orders.get(cur, 0) + n
        self.visitors.merge(other.visitors)
        self.buyers.merge(other.buyers)
        self.visits += other.visits
        self.bounces += other.bounces
        self.duration_us += other.duration_us
        self.visit_page_views += other.visit_page_views
        return self


def merge_into(target: dict, tallies: dict) -> None:
    """Merge tallies keyed alike into ``target``, adopting those it does not hold yet."""
    for key, t in tallies.items():
        if key in target:
            target[key].merge(t)
        else:
            target[key] = t


def visitors(t: Tally) -> int:
    """Distinct visitors, never more than the tally's events (each visitor sent one at least)."""
    return min(t.visitors.count(), t.page_views + t.events)


def buyers(t: Tally) -> int:
    """Distinct buyers, never more than the purchases nor the visitors."""
    return min(t.buyers.count(), t.purchases, visitors(t))


def ratio(numerator: float, denominator: float, scale: float = 1.0) -> float:
    return round(numerator * scale / denominator, 2) if denominator else 0.0


def average_minor_units(total: int, n: int) -> int:
    """Mean in whole minor units, halves rounded up."""
    return (2 * total + n) // (2 * n)


def _aov(t: Tally) -> dict:
    return {cur: average_minor_units(t.revenue[cur], n) for cur, n in sorted(t.orders.items()) if n}


# Metric name → function of a merged Tally. The query registry adds docs to these.
FINALIZERS = {
    "page_views": lambda t: t.page_views,
    "unique_visitors": visitors,
    "events": lambda t: t.events,
    "visits": lambda t: t.visits,
    "bounce_rate": lambda t: ratio(t.bounces, t.visits, 100),
    "visit_duration": lambda t: ratio(t.duration_us, t.visits, 1e-6),
    "views_per_visit": lambda t: ratio(t.visit_page_views, t.visits),
    "purchases": lambda t: t.purchases,
    "revenue": lambda t: {cur: t.revenue[cur] for cur in sorted(t.revenue)},
    "average_order_value": _aov,
    "conversion_rate": lambda t: ratio(buyers(t), visitors(t), 100),
}

# Metric → whether its value for a merged Tally is an estimate (a HyperLogLog union of visitor sets).
ESTIMATED = {
    "unique_visitors": lambda t: t.visitors.estimated,
    "conversion_rate": lambda t: t.visitors.estimated or t.buyers.estimated,
}


def estimated_metrics(metrics: tuple, tally: Tally) -> list[str]:
    return [m for m in metrics if m in ESTIMATED and ESTIMATED[m](tally)]


# Rate metric → its denominator: a rate of 0 over a non-empty denominator is a measurement
# (a page nobody bounced from), not an empty breakdown row.
DENOMINATORS = {
    "bounce_rate": lambda t: t.visits,
    "visit_duration": lambda t: t.visits,
    "views_per_visit": lambda t: t.visits,
    "conversion_rate": visitors,
}


def has_data(metrics: tuple, tally: Tally, values: dict) -> bool:
    """Whether a breakdown row has anything to show: a requested metric with a non-zero value,
    or a requested rate with a non-zero denominator."""
    return any(values.values()) or any(DENOMINATORS[m](tally) for m in metrics if m in DENOMINATORS)
