"""End to end: the QEMU-emulated Arduino on a pseudo-terminal, captured into the landing zone.

The firmware is deterministic: after the ``r`` command it prints the same
stream as after boot, seq 0, 1, 2, ... with one malformed line inserted
before every ninth reading (before seq 9, 18, 27, ...), the malformed kinds
rotating through 0, 1, 2, 3, 4, 6 with ``MALFORMED_KINDS=0x5F`` (kind 5 would
glue a fragment to the next reading and lose it). So we know exactly what it
sent: every valid seq from 0 to the last one must be in the spool once, and
every malformed line in quarantine, in its place, with the right reason.
"""

from __future__ import annotations

import base64
import os
import tty

import pyarrow.compute as pc
import pytest
from conftest_serial import emulated_arduino, read_landing, read_until, require_emulator, running, wait_until

from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import read_quarantine

pytestmark = pytest.mark.emulator

# Malformed kinds 0, 1, 2, 3, 4, 6 (see fw.c) and the reason each must get.
EXPECTED_CODES = ["field_count", "decode", "field_count", "non_finite", "empty", "field_count"]
MIN_READINGS = 150


def test_emulated_arduino_every_valid_line_spooled_once_every_malformed_quarantined(tmp_path):
    require_emulator()
    landing = tmp_path / "landing"
    with emulated_arduino(PERIOD_MS="10", MALFORMED_KINDS="0x5F", MALFORMED_EVERY="10") as dev:
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
                os.write(cmd, b"p")  # pause: the stream ends after a complete valid line
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
    # The firmware's first readings after a restart (SEED 12345), exactly.
    first = table.slice(0, 2).select(["temperature", "humidity", "pressure", "vibration", "battery_level"]).to_pylist()
    assert first == [
        {"temperature": 23.61, "humidity": 45.4, "pressure": 1013.2, "vibration": 0.02, "battery_level": 98.7},
        {"temperature": 23.74, "humidity": 45.2, "pressure": 1012.9, "vibration": 0.16, "battery_level": 98.7},
    ]

    records = read_quarantine(landing)
    n_bad = last // 9  # one malformed line before seq 9, 18, 27, ...
    assert [r["code"] for r in records] == [EXPECTED_CODES[k % 6] for k in range(n_bad)]
    received = table.column("received_at").to_pylist()
    for k, rec in enumerate(records, start=1):
        # each malformed line arrived between the readings with seq 9k-1 and 9k
        before, after = received[9 * k - 1], received[9 * k]
        assert before.isoformat().replace("+00:00", "Z") < rec["received_at"] < after.isoformat().replace("+00:00", "Z")
        assert rec["source"] == f"serial:{dev}"
    garbage = [base64.b64decode(r["raw_b64"]) for r in records if r["code"] == "decode"]
    assert garbage and all(g.startswith(b"\xff\x00") and g.endswith(b"\r") for g in garbage)
    assert all(base64.b64decode(r["raw_b64"]) == b"\r" for r in records if r["code"] == "empty")

    assert stats.comments == 3  # '# ok r', '# ok g', '# ok p'
    assert stats.lines == (last + 1) + n_bad + 3
    assert stats.spooled == last + 1
    assert stats.rejected == n_bad
    assert stats.dropped == 0
