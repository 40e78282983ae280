"""End to end: the project's QEMU-emulated board on a pseudo-terminal, captured into the landing zone.

The board (tests/emulated_board/fw.c) is deterministic, and
``emulated_board.expected_lines`` models it byte for byte: after the ``r``
command it prints seq 0, 1, 2, ... with one malformed line before every
reading whose seq is a multiple of 9 (9, 18, 27, ...), the kinds rotating
through truncated, garbage, missing fields, NaN, empty and extra field. So we
know exactly what it sent: every reading must be in the spool once with its
exact values, and every malformed line in quarantine, in its place, with its
exact bytes and reason.
"""

from __future__ import annotations

import base64
import os
import tty

import pyarrow.compute as pc
import pytest
from conftest_serial import read_landing, read_until, running, wait_until
from emulated_board import emulated_board, expected_lines, require_board

from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import read_quarantine

pytestmark = pytest.mark.emulator

MIN_READINGS = 150
METRIC_COLUMNS = ["temperature", "humidity", "pressure", "vibration", "battery_level"]


def test_emulated_board_every_valid_line_spooled_once_every_malformed_quarantined(tmp_path):
    require_board()
    landing = tmp_path / "landing"
    with emulated_board(tmp_path / "board", period_ms=10, bad_every=9) as dev:
        # A second handle on the board's tty for commands. Pause the board before the
        # capture opens the port, so that the captured stream starts at a known point.
        cmd = os.open(dev, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(cmd)
            os.write(cmd, b"p")
            read_until(cmd, b"# ok p\r\n")

            capture = Capture(
                CaptureConfig(port=dev, baud=115200, rotate_seconds=0.5, metrics_interval=60), landing
            )
            with running(capture):
                # One command at a time: the firmware keeps only the last byte received.
                os.write(cmd, b"r")  # restart: seq 0, the same bytes as after boot
                wait_until(lambda: capture.stats.comments >= 1, "the board to acknowledge 'r'")
                os.write(cmd, b"g")  # go
                wait_until(lambda: capture.stats.comments >= 2, "the board to acknowledge 'g'")
                wait_until(lambda: capture.stats.readings >= MIN_READINGS, f"{MIN_READINGS} readings", timeout=30)
                os.write(cmd, b"p")  # pause: the stream ends after a complete reading
                wait_until(lambda: capture.stats.comments >= 3, "the board to acknowledge 'p'")
            stats = capture.stats
        finally:
            os.close(cmd)

    table = read_landing(landing).sort_by("received_at")
    seqs = table.column("seq").to_pylist()
    last = seqs[-1]
    assert seqs == list(range(last + 1))  # every valid line, once, in order, no gaps
    assert last + 1 >= MIN_READINGS
    assert set(table.column("sensor_id").to_pylist()) == {"sensor_001"}
    assert set(table.column("source").to_pylist()) == {f"serial:{dev}"}
    assert pc.all(pc.equal(table.column("ts"), table.column("received_at"))).as_py()  # host time: no device clock

    # Every reading has exactly the values the firmware model gives.
    expected = expected_lines(last + 1, bad_every=9)
    want = [dict(zip(METRIC_COLUMNS, map(float, line.split(b",")[2:]))) for kind, line in expected if kind == "reading"]
    assert table.select(METRIC_COLUMNS).to_pylist() == want
    assert table.slice(0, 1).select(METRIC_COLUMNS).to_pylist() == [  # spelled out once, for the reader
        {"temperature": 21.36, "humidity": 47.5, "pressure": 1013.0, "vibration": 0.44, "battery_level": 100.0}
    ]

    # Every malformed line, in its place, with its bytes (less the LF that framed it) and its reason.
    records = read_quarantine(landing)
    bad = [(kind, line) for kind, line in expected if kind != "reading"]
    assert len(bad) == last // 9
    assert [r["code"] for r in records] == [kind for kind, _ in bad]
    assert [base64.b64decode(r["raw_b64"]) for r in records] == [line[:-1] for _, line in bad]
    received = table.column("received_at").to_pylist()
    for k, rec in enumerate(records, start=1):
        # each malformed line arrived between the readings with seq 9k-1 and 9k
        before, after = received[9 * k - 1], received[9 * k]
        assert before.isoformat().replace("+00:00", "Z") < rec["received_at"] < after.isoformat().replace("+00:00", "Z")
        assert rec["source"] == f"serial:{dev}"

    assert stats.comments == 3  # '# ok r', '# ok g', '# ok p'
    assert stats.lines == (last + 1) + len(bad) + 3
    assert stats.spooled == last + 1
    assert stats.rejected == len(bad)
    assert stats.dropped == 0
