"""How the dashboard writes the API's numbers: compact on screen, exact in the tooltip."""

# ISO 4217 minor units where they are not 2.
_EXPONENTS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩"}
RATES = {"bounce_rate", "conversion_rate"}  # percentages: their change is in points
MONEY = {"revenue", "average_order_value"}
LOWER_IS_BETTER = {"bounce_rate"}


def compact(n: int | float) -> str:
    """12 → "12", 12345 → "12.3k", 1234567 → "1.2M"."""
    value = abs(n)
    sign = "-" if n < 0 else ""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            text = f"{scaled:.1f}" if scaled < 100 else f"{scaled:.0f}"
            return sign + text.removesuffix(".0") + suffix
    return sign + (f"{value:g}" if isinstance(value, float) else str(value))


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def money(minor: int, currency: str) -> str:
    exponent = _EXPONENTS.get(currency, 2)
    amount = minor / 10**exponent
    number = f"{amount:,.{exponent}f}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{currency} {number}"


def money_compact(minor: int, currency: str) -> str:
    """Short money for a card: "$5.1k", "€980.50"."""
    amount = minor / 10 ** _EXPONENTS.get(currency, 2)
    if abs(amount) < 1000:
        return money(minor, currency)
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{compact(amount)}" if symbol else f"{currency} {compact(amount)}"


def display(value, metric: str) -> str:
    """The value as the dashboard shows it."""
    if value is None:
        return "—"
    if metric in MONEY:
        return " · ".join(money(v, c) for c, v in value.items()) or "—"
    if metric in RATES:
        return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"
    if metric == "visit_duration":
        return duration(value)
    if metric == "views_per_visit":
        return f"{value:.2f}"
    return compact(value)


def exact(value, metric: str) -> str:
    """The value in full, for tooltips and screen readers."""
    if value is None:
        return ""
    if metric in MONEY:
        return ", ".join(money(v, c) for c, v in value.items())
    if metric in RATES:
        return f"{value:g}%"
    if metric == "visit_duration":
        return f"{value:g} seconds"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def change(current, previous, metric: str) -> dict | None:
    """The change against the comparison period: text, direction and whether it is good news."""
    if previous is None or metric in MONEY or not isinstance(current, int | float):
        return None
    if metric in RATES:
        delta = round(current - previous, 1)
        text = f"{abs(delta):g} pp"
    elif previous == 0:
        if current == 0:
            return {"text": "0%", "direction": "flat", "good": None, "exact": "no change"}
        return {"text": "new", "direction": "up", "good": metric not in LOWER_IS_BETTER, "exact": f"up from {exact(0, metric)}"}
    else:
        delta = round((current - previous) / previous * 100)
        text = f"{abs(delta)}%"
    if delta == 0:
        return {"text": text, "direction": "flat", "good": None, "exact": "no change"}
    up = delta > 0
    return {
        "text": text,
        "direction": "up" if up else "down",
        "good": up != (metric in LOWER_IS_BETTER),
        "exact": f"{'up' if up else 'down'} {text} from {exact(previous, metric)}",
    }
