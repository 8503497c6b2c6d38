"""Progress of a long command (``export_events``, ``import_events``): a tqdm bar with the rate
and the time left on a terminal, a plain line every few seconds otherwise (a log, a pipe)."""

import time

from tqdm import tqdm

LOG_EVERY = 5.0  # seconds between lines when the output is not a terminal


class Progress:
    """``progress(n)``: n more done. ``stream`` is a file (Django's command wrapper ends every
    write with a newline, which would break the bar: pass ``sys.stderr`` on a terminal)."""

    def __init__(self, *, stream, label: str, total: int | None, unit: str = "events"):
        self.stream, self.label, self.total, self.unit = stream, label, total, unit
        self.done = 0
        self.started = self.logged = time.monotonic()
        self.bar = None
        if getattr(stream, "isatty", lambda: False)():
            self.bar = tqdm(total=total, desc=label, unit=f" {unit}", unit_scale=True, file=stream, dynamic_ncols=True)

    def __call__(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.logged >= LOG_EVERY:
            self.logged = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,} {self.unit}"
        if self.total:
            left = (self.total - self.done) / rate if rate else float("inf")
            text += f" of {self.total:,} ({self.done / self.total:.0%}), {rate:,.0f} {self.unit}/s, {_duration(left)} left"
        else:
            text += f", {rate:,.0f} {self.unit}/s"
        return text

    def close(self) -> float:
        """End the bar; the seconds since the start."""
        if self.bar is not None:
            self.bar.close()
        return time.monotonic() - self.started


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
