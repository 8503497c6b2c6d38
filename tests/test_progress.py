"""Progress of long commands when the output is not a terminal: plain log lines."""

import io
import re

from infinity.progress import Progress


def test_log_lines_with_rate_and_time_left_when_not_a_terminal():
    out = io.StringIO()
    with Progress("rollups", total=4, unit="bucket", stream=out, interval=0.0) as progress:
        for _ in range(3):
            progress.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # one per update (interval 0) and the last figures
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d rollups: 1/4 buckets \(25\.0 %\), [\d,.]+ buckets/s, "
                        r"0:00 elapsed, \d+:\d\d left", lines[0])  # fmt: skip
    assert "3/4 buckets (75.0 %)" in lines[-1]
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()  # no bar redraws in a log


def test_quiet_when_short_or_disabled():
    out = io.StringIO()
    with Progress("rollups", total=2, stream=out, interval=60.0) as progress:
        progress.update(2)
    with Progress("rollups", total=2, stream=out, interval=0.0, enabled=False) as progress:
        progress.update(2)
    assert out.getvalue() == ""


def test_total_found_as_it_goes():
    out = io.StringIO()
    progress = Progress("events", unit="event", stream=out, interval=0.0)
    progress.update(5)
    progress.add_total(10)
    progress.update(5)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "events: 5 events," in lines[0]
    assert "10/10 events (100.0 %)" in lines[-1]
