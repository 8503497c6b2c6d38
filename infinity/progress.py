"""Progress of long commands: a tqdm bar on a terminal, a log line every few seconds otherwise.

    with Progress("rollups", unit="bucket", total=420) as progress:
        for bucket in due:
            build(bucket)
            progress.update()

A terminal gets tqdm's bar (count, rate, time left). Anything else (a log file, systemd's
journal, a pipe) gets one plain line per ``interval`` seconds with the same figures, and a
last line when the work ends, so a run that takes minutes is never silent and a log is not
flooded with bar redraws. ``enabled=False`` (e.g. ``--verbosity 0``) prints nothing.
"""

import sys
import time
from datetime import UTC, datetime

from tqdm import tqdm

INTERVAL = 5.0  # seconds between log lines when the output is not a terminal


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, desc: str, *, total: int | None = None, unit: str = "it", stream=None,
                 interval: float | None = None, enabled: bool = True):  # fmt: skip
        self.desc, self.total, self.unit = desc, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = INTERVAL if interval is None else interval
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._next_line = self.started + self.interval
        self._logged = False
        self._bar = None
        if enabled and _is_terminal(self.stream):
            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", unit_scale=True, file=self.stream, dynamic_ncols=True)

    def add_total(self, n: int) -> None:
        """Grow the expected total (work found as it goes, e.g. one site's buckets at a time)."""
        self.total = (self.total or 0) + n
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            now = time.monotonic()
            if now >= self._next_line:
                self._line(now)
                self._next_line = now + self.interval

    def line(self) -> str:
        """The progress as one line: done (of total, percent), rate and time left."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.desc}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit}s ({100 * self.done / self.total:.1f} %)"
        else:
            text += f" {self.unit}s"
        text += f", {rate:,.1f} {self.unit}s/s, {_clock(elapsed)} elapsed"
        if self.total and rate > 0 and self.done < self.total:
            text += f", {_clock((self.total - self.done) / rate)} left"
        return text

    def _line(self, now: float) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.stream.write(f"{stamp} {self.line()}\n")
        self.stream.flush()
        self._logged = True

    def close(self) -> float:
        """End the bar or the log lines; the seconds since the start."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self._logged:  # the last figures, after the periodic lines
            self._line(time.monotonic())
        self.enabled = False
        return time.monotonic() - self.started

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
