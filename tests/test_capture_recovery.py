"""What serial capture recovers instead of losing: glued readings, over-long lines, a replugged port.

The line-level cases are pure (``LineParser``, ``LineSplitter``); the capture
cases write real bytes into a real pseudo-terminal and read back the landing
and quarantine files.
"""

from __future__ import annotations

import base64

import numpy as np
from conftest_serial import PtyPair, csv_line, read_landing, running, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_platform.core.reading_rules import ParseError
from iot_platform.core.serial_protocol import LineFormat, LineParser, LineSplitter
from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import read_quarantine
from iot_platform.io import serial_port

GLUED = b"sensor_001,1sensor_001,17,23.51,45.2,1013.2,0.31,98.7"  # the firmware's malformed kind 5


def _parse(parser: LineParser, lines: list[bytes]):
    received = np.arange(len(lines), dtype=np.int64) + 1_763_823_662_000_000
    return parser.parse_batch(lines, received, "serial:test")


# -- a fragment without end of line glued to a reading -----------------------------------------


def test_the_reading_behind_a_glued_fragment_is_recovered():
    parser = LineParser(LineFormat())
    lines = [csv_line(i).rstrip(b"\n") for i in range(17)] + [
        GLUED + b"\r",
        b"sensor_0sensor_001,18,23.5,45.2,1013.2,0.31,98.7",  # cut inside the id: the line looks valid
        b"ssensor_001,19,23.5,45.2,1013.2,0.31,98.7",
        b"sensor_001,20,23.5sensor_001,21,23.5,45.2,1013.2,0.31,98.7",
        b"sensor_001,2",  # a fragment that reached its end of line: nothing to recover
    ]
    batch = _parse(parser, lines)
    assert batch.table.column("seq").to_pylist() == [*range(17), 17, 18, 19, 21]
    assert batch.table.column("sensor_id").to_pylist() == ["sensor_001"] * 21
    row17 = batch.table.slice(17, 1).select(["temperature", "humidity", "pressure", "vibration", "battery_level"])
    assert row17.to_pylist() == [
        {"temperature": 23.51, "humidity": 45.2, "pressure": 1013.2, "vibration": 0.31, "battery_level": 98.7}
    ]
    assert batch.index.tolist() == [*range(17), 17, 18, 19, 20]
    assert [(f.index, f.raw) for f in batch.fragments] == [
        (17, b"sensor_001,1"),
        (18, b"sensor_0"),
        (19, b"s"),
        (20, b"sensor_001,20,23.5"),
    ]
    assert [(r.index, r.error.code) for r in batch.rejects] == [(21, "field_count")]


def test_without_a_known_sensor_id_nothing_is_split():
    # the first line ever seen: no reading yet says what a record's start looks like
    batch = _parse(LineParser(LineFormat()), [GLUED])
    assert batch.table.num_rows == 0 and batch.fragments == []
    assert [r.error.code for r in batch.rejects] == ["field_count"]


def test_an_unknown_id_that_only_ends_like_a_known_one_is_not_split():
    parser = LineParser(LineFormat())
    lines = [csv_line(i, "sensor_001").rstrip(b"\n") for i in range(3)] + [
        b"room_sensor_001,5,20,1,1,1,1",  # 'room_' is not the start of a known id's line
    ]
    batch = _parse(parser, lines)
    assert batch.table.column("sensor_id").to_pylist() == ["sensor_001"] * 3 + ["room_sensor_001"]
    assert batch.fragments == []


_PIECES = st.sampled_from(
    [b"sensor_001", b"sensor_00", b"s", b",", b"17", b"23.51", b"45.2,1013.2,0.31,98.7", b"x", b"\r", b"sensor_002,"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_PIECES, min_size=1, max_size=12).map(b"".join), min_size=1, max_size=30))
def test_property_a_split_line_is_fragment_plus_a_record_parse_line_accepts(lines):
    parser = LineParser(LineFormat())
    known = [csv_line(i, sid).rstrip(b"\n") for i, sid in enumerate(["sensor_001", "sensor_002"])]
    batch = _parse(parser, known + lines)
    fragments = {f.index: f.raw for f in batch.fragments}
    rows = dict(zip(batch.index.tolist(), batch.table.to_pylist()))
    for i, line in enumerate(known + lines):
        if i in fragments:
            record = line[len(fragments[i]) :]
            assert line.startswith(fragments[i]) and fragments[i]
            reading = parser.parse_line(record)
            assert reading is not None and reading.sensor_id in ("sensor_001", "sensor_002")
            assert (rows[i]["sensor_id"], rows[i]["seq"]) == (reading.sensor_id, reading.seq)
        elif i in rows:
            assert parser.parse_line(line) is not None
        else:
            try:
                assert parser.parse_line(line) is None  # a comment
            except ParseError:
                pass


def test_capture_on_a_pty_recovers_the_glued_reading_and_quarantines_only_the_fragment(tmp_path):
    with PtyPair() as pty:
        capture = Capture(CaptureConfig(port=pty.path, rotate_seconds=0.2, metrics_interval=60), tmp_path)
        with running(capture):
            sent = b"".join(csv_line(i) for i in range(17)) + GLUED + b"\r\n"
            sent += b"".join(csv_line(i) for i in range(18, 30))
            pty.write(sent)
            wait_until(lambda: capture.stats.readings == 30, "30 readings")
    assert read_landing(tmp_path).sort_by("received_at").column("seq").to_pylist() == list(range(30))
    records = read_quarantine(tmp_path)
    assert [(r["line"], r["code"], base64.b64decode(r["raw_b64"])) for r in records] == [
        (18, "fragment", b"sensor_001,1")
    ]
    assert records[0]["reason"] == (
        "the start of a line cut off without an end of line; the complete reading glued after it was kept"
    )
    assert (capture.stats.readings, capture.stats.rejected) == (30, 1)


# -- lines over the framing limit: one record per line ------------------------------------------


def test_a_long_line_arriving_in_pieces_is_one_record():
    s = LineSplitter(max_line_bytes=4)
    assert s.feed(b"ok\n123456") == ([b"ok"], {})
    assert s.feed(b"78") == ([], {})
    assert s.feed(b"9\nnext\n") == ([b"123456789", b"next"], {0: "too_long"})
    assert s.feed(b"a\n0123456789\nb\n") == ([b"a", b"0123456789", b"b"], {1: "too_long"})
    assert s.feed(b"12345") == ([], {})
    assert s.flush() == b"12345"  # an unfinished line, long or not, is handed back whole


def test_a_line_that_never_ends_is_cut_at_the_hard_limit_only():
    s = LineSplitter(max_line_bytes=4, max_record_bytes=10)
    assert s.feed(b"0123456789abc") == ([b"0123456789"], {0: "too_long"})
    assert s.feed(b"d\nok\n") == ([b"abcd", b"ok"], {0: "too_long"})


def test_capture_quarantines_a_5000_byte_line_as_one_record(tmp_path):
    long_line = b"sensor_001,1," + b"9" * 4987  # 5,000 bytes
    with PtyPair() as pty:
        capture = Capture(CaptureConfig(port=pty.path, rotate_seconds=0.2, metrics_interval=60), tmp_path)
        with running(capture):
            pty.write(csv_line(0))
            wait_until(lambda: capture.stats.readings == 1, "the first reading")
            for k in range(0, len(long_line), 1000):  # in pieces, as a slow link delivers it
                pty.write(long_line[k : k + 1000])
                wait_until(lambda k=k: capture.stats.bytes == len(csv_line(0)) + min(k + 1000, len(long_line)), "a piece")
            pty.write(b"\r\n" + csv_line(2))
            wait_until(lambda: capture.stats.readings == 2, "the reading after the long line")
    records = read_quarantine(tmp_path)
    assert [(r["line"], r["code"], base64.b64decode(r["raw_b64"])) for r in records] == [
        (2, "too_long", long_line + b"\r")
    ]
    assert read_landing(tmp_path).column("seq").to_pylist() == [0, 2]
    assert capture.stats.lines == 3


# -- unplug and replug: reopen at once, keep what the device sent meanwhile --------------------


def test_retry_schedule_is_fast_first_then_short_polls_capped():
    r = serial_port.RetrySchedule(first=0.01, interval=0.05, maximum=0.25)
    assert [r.next_delay() for _ in range(7)] == [0.01, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25]
    r.reset()
    assert r.next_delay() == 0.01


def test_lines_written_right_after_a_replug_are_captured(tmp_path):
    link = tmp_path / "ttyACM0"
    landing = tmp_path / "landing"
    first = PtyPair(link=link)
    pairs = [first]
    capture = Capture(CaptureConfig(port=str(link), rotate_seconds=0.2, metrics_interval=60), landing)
    try:
        with running(capture):
            seq = 0
            for cycle in range(3):
                lines = b"".join(csv_line(seq + i) for i in range(20))
                pairs[-1].write(lines)
                seq += 20
                wait_until(lambda: capture.stats.readings == seq, f"the readings of cycle {cycle}")
                pairs[-1].close()  # unplugged
                wait_until(lambda cycle=cycle: capture.stats.disconnects == cycle + 1, "capture to notice")
                pairs.append(PtyPair(link=link))  # plugged in again: the board talks at once
                pairs[-1].write(b"".join(csv_line(seq + i) for i in range(20)))
                seq += 20
                wait_until(lambda: capture.stats.readings == seq, f"the lines sent right after replug {cycle}")
    finally:
        for p in pairs:
            p.close()
    assert read_landing(landing).sort_by("received_at").column("seq").to_pylist() == list(range(120))
    assert (capture.stats.disconnects, capture.stats.reconnects) == (3, 3)
    assert read_quarantine(landing) == []
