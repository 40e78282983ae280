"""The QEMU-emulated Arduino at its defaults, glued lines included: capture loses no valid seq.

With every malformed kind on (``MALFORMED_KINDS=0x7F``, the firmware's
default), kind 5 prints the start of a reading without an end of line, so
the next valid reading arrives glued to it. Capture must keep that reading
and quarantine only the fragment, so every seq from 0 to the last arrives.
"""

from __future__ import annotations

import base64
import os
import tty

import pytest
from conftest_serial import emulated_arduino, read_landing, read_until, require_emulator, running, wait_until

from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import read_quarantine

pytestmark = pytest.mark.emulator

# Malformed kinds 0..6 in rotation (see fw.c) and the code each must get.
EXPECTED_CODES = ["field_count", "decode", "field_count", "non_finite", "empty", "fragment", "field_count"]
MIN_READINGS = 200


def test_emulated_arduino_at_defaults_loses_no_valid_seq(tmp_path):
    require_emulator()
    landing = tmp_path / "landing"
    with emulated_arduino(PERIOD_MS="10") as dev:  # every other option at the firmware's default
        cmd = os.open(dev, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(cmd)
            os.write(cmd, b"p")
            read_until(cmd, b"# ok p\r\n")
            capture = Capture(CaptureConfig(port=dev, baud=115200, rotate_seconds=0.5, metrics_interval=60), landing)
            with running(capture):
                os.write(cmd, b"r")  # restart: seq 0, the malformed rotation from kind 0
                wait_until(lambda: capture.stats.comments >= 1, "the board to acknowledge 'r'")
                os.write(cmd, b"g")
                wait_until(lambda: capture.stats.comments >= 2, "the board to acknowledge 'g'")
                wait_until(lambda: capture.stats.readings >= MIN_READINGS, f"{MIN_READINGS} readings", timeout=30)
                os.write(cmd, b"p")
                wait_until(lambda: capture.stats.comments >= 3, "the board to acknowledge 'p'")
        finally:
            os.close(cmd)

    table = read_landing(landing).sort_by("received_at")
    seqs = table.column("seq").to_pylist()
    last = seqs[-1]
    assert seqs == list(range(last + 1))  # 0 valid seqs lost, none twice
    assert set(table.column("sensor_id").to_pylist()) == {"sensor_001"}

    records = read_quarantine(landing)
    n_bad = last // 9  # one malformed line before seq 9, 18, 27, ...
    assert [r["code"] for r in records] == [EXPECTED_CODES[k % 7] for k in range(n_bad)]
    received = {seq: t.isoformat().replace("+00:00", "Z") for seq, t in zip(seqs, table.column("received_at").to_pylist())}
    for k, rec in enumerate(records, start=1):
        if rec["code"] == "fragment":
            # glued to the reading with seq 9k: the same line, so the same receive time; the fragment
            # is the start of a reading of this sensor, as the firmware cut it
            assert rec["received_at"] == received[9 * k]
            assert b"sensor_001,".startswith(base64.b64decode(rec["raw_b64"])[:11])
        else:
            assert received[9 * k - 1] < rec["received_at"] < received[9 * k]
    assert sum(r["code"] == "fragment" for r in records) == (n_bad + 1) // 7
