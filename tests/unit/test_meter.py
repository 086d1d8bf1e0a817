"""Byte counting for progress bars, and the rich bar that shows it on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from reconciler.backup.meter import NO_METER, CountingReader, CountingWriter
from reconciler.cli.progress import RichMeter, meter_for


class Tally:
    def __init__(self) -> None:
        self.total = 0

    def advance(self, amount: int) -> None:
        self.total += amount


def test_counting_streams_pass_data_through_and_count_it():
    tally, sink = Tally(), io.BytesIO()
    writer = CountingWriter(sink, tally)
    writer.write(b"abc")
    writer.write(b"defgh")
    assert sink.getvalue() == b"abcdefgh" and tally.total == 8

    tally = Tally()
    reader = CountingReader(io.BytesIO(b"0123456789"), tally)
    assert reader.read(4) == b"0123" and reader.read() == b"456789" and reader.read(3) == b""
    assert tally.total == 10


def test_no_meter_off_a_terminal_or_in_json():
    console = Console(file=io.StringIO())
    assert meter_for(console, as_json=True) is NO_METER
    assert meter_for(console, as_json=False) is NO_METER  # pytest's stderr is not a terminal


def test_rich_bar_grows_past_an_estimate_and_ends_at_what_was_moved():
    out = io.StringIO()
    meter = RichMeter(Console(file=out, force_terminal=True, width=100))
    with meter.task("backing up postgres", 1000) as bar:
        bar.advance(600)
        bar.advance(900)  # the estimate was short
        assert bar.total == 1500
    with meter.task("backing up cache", None) as bar:  # no estimate at all
        bar.advance(10)
        assert bar.total is None
    assert "backing up postgres" in out.getvalue()
