"""End to end: the project's QEMU-emulated board at its defaults, captured into the landing zone.

The board (tests/emulated_board/fw.c) is deterministic, and
``emulated_board.expected_lines`` models it byte for byte: after the ``r``
command it prints seq 0, 1, 2, ... with one malformed line before every
reading whose seq is a multiple of 9 (9, 18, 27, ...), the kinds rotating
through truncated, garbage, missing fields, NaN, empty, extra field and a
fragment: the start of the coming reading with no end of line, so that reading
arrives glued to it (``sensor_001,1`` + ``sensor_001,189,...``). So we know
exactly what it sent: every reading must be in the spool once with its exact
values -- the glued ones too, so no valid seq is lost (issue 10, item 7a) --
and every malformed line in quarantine, in its place, with its exact bytes and
reason.

The first test needs QEMU and avr-gcc; the second runs the model's stream
through the same parser capture uses, with no emulator, over many more
fragments (cut lengths 1 to 32 bytes).
"""

from __future__ import annotations

import base64
import os
import tty

import numpy as np
import pyarrow.compute as pc
import pytest
from conftest_serial import read_landing, read_until, running, wait_until
from emulated_board import BAD_CODES, FRAGMENT_MAX, emulated_board, expected_lines, require_board

from iot_platform.core.serial_protocol import LineFormat, LineParser, LineSplitter
from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import read_quarantine

MIN_READINGS = 200  # fragments glued to seq 63, 126 and 189 at least
METRIC_COLUMNS = ["temperature", "humidity", "pressure", "vibration", "battery_level"]


def _quarantined_bytes(kind: str, line: bytes) -> bytes:
    """What quarantine keeps of a malformed line: a fragment as it is, any other line less the LF that framed it."""
    return line if kind == "fragment" else line[:-1]


@pytest.mark.emulator
def test_emulated_board_at_defaults_every_valid_seq_spooled_once_every_malformed_quarantined(tmp_path):
    require_board()
    landing = tmp_path / "landing"
    # Every firmware option at its default (bad_every 9, every malformed kind, the default seed)
    # but the period: 10 ms instead of 100 ms, only to make the test quicker.
    with emulated_board(tmp_path / "board", period_ms=10) as dev:
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
    assert seqs == list(range(last + 1))  # every valid line, once, in order: 0 valid seqs lost
    assert last + 1 >= MIN_READINGS
    assert set(table.column("sensor_id").to_pylist()) == {"sensor_001"}
    assert set(table.column("source").to_pylist()) == {f"serial:{dev}"}
    assert pc.all(pc.equal(table.column("ts"), table.column("received_at"))).as_py()  # host time: no device clock

    # Every reading has exactly the values the firmware model gives.
    expected = expected_lines(last + 1)
    want = [dict(zip(METRIC_COLUMNS, map(float, line.split(b",")[2:]))) for kind, line in expected if kind == "reading"]
    assert table.select(METRIC_COLUMNS).to_pylist() == want
    assert table.slice(0, 1).select(METRIC_COLUMNS).to_pylist() == [  # spelled out once, for the reader
        {"temperature": 21.36, "humidity": 47.5, "pressure": 1013.0, "vibration": 0.44, "battery_level": 100.0}
    ]

    # Every malformed line, in its place, with its bytes and its reason.
    records = read_quarantine(landing)
    bad = [(kind, line) for kind, line in expected if kind != "reading"]
    assert len(bad) == last // 9
    assert [r["code"] for r in records] == [kind for kind, _ in bad]
    assert [base64.b64decode(r["raw_b64"]) for r in records] == [_quarantined_bytes(k, line) for k, line in bad]
    n_fragments = last // 63  # the 7th, 14th, ... malformed line: before seq 63, 126, 189, ...
    assert [k for k, rec in enumerate(records, start=1) if rec["code"] == "fragment"] == [
        7 * j for j in range(1, n_fragments + 1)
    ]
    assert n_fragments >= 3
    received = [t.isoformat().replace("+00:00", "Z") for t in table.column("received_at").to_pylist()]
    for k, rec in enumerate(records, start=1):
        if rec["code"] == "fragment":
            # glued to the reading with seq 9k: the same line, so the same receive time
            assert rec["received_at"] == received[9 * k]
        else:
            # each other malformed line arrived between the readings with seq 9k-1 and 9k
            assert received[9 * k - 1] < rec["received_at"] < received[9 * k]
        assert rec["source"] == f"serial:{dev}"

    assert stats.comments == 3  # '# ok r', '# ok g', '# ok p'
    assert stats.lines == (last + 1) + len(bad) - n_fragments + 3  # a fragment shares its reading's line
    assert stats.spooled == last + 1
    assert stats.rejected == len(bad)
    assert stats.dropped == 0


def test_board_model_stream_parsed_as_capture_does_loses_no_valid_seq():
    n = 6000
    expected = expected_lines(n)
    fragments = [line for kind, line in expected if kind == "fragment"]
    # The model itself: a fragment is the start of the reading it is glued to, and never a whole reading.
    glued = [(line, expected[i + 1]) for i, (kind, line) in enumerate(expected) if kind == "fragment"]
    assert all(nxt[0] == "reading" and nxt[1].startswith(frag) and len(frag) < len(nxt[1]) - 2 for frag, nxt in glued)
    assert len(fragments) == (n - 1) // 63 == 95
    assert {len(f) for f in fragments} == set(range(1, FRAGMENT_MAX + 1)) - {12, 14}  # the cuts this seed draws

    # The byte stream, cut into lines and parsed 64 lines at a time, as capture does.
    splitter, parser = LineSplitter(), LineParser(LineFormat())
    lines, _ = splitter.feed(b"".join(line for _, line in expected))
    assert splitter.pending == b""
    seqs: list[int] = []
    refused: list[tuple[int, str, bytes]] = []
    for start in range(0, len(lines), 64):
        chunk = lines[start : start + 64]
        batch = parser.parse_batch(chunk, np.arange(start, start + len(chunk), dtype=np.int64), "serial:model")
        seqs += batch.table.column("seq").to_pylist()
        refused += [(start + r.index, r.error.code, chunk[r.index]) for r in batch.rejects]
        refused += [(start + f.index, "fragment", f.raw) for f in batch.fragments]
    assert seqs == list(range(n))
    refused.sort(key=lambda r: r[0])
    bad = [(kind, line) for kind, line in expected if kind != "reading"]
    assert [(code, raw) for _, code, raw in refused] == [(kind, _quarantined_bytes(kind, line)) for kind, line in bad]
    assert {code for _, code, _ in refused} == set(BAD_CODES)
