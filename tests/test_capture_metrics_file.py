"""A capture writes its periodic metrics to landing/_metrics/<stream>.json for the dashboard."""

from __future__ import annotations

import json

from conftest_serial import PtyPair, csv_line, running, wait_until

from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.microbatch import pending_landing_files


def test_metrics_file_after_a_capture(tmp_path):
    landing = tmp_path / "landing"
    with PtyPair() as pty:
        capture = Capture(CaptureConfig(port=pty.path, rotate_seconds=0.2, metrics_interval=60), landing)
        with running(capture):
            data = b"".join(csv_line(i) for i in range(100)) + b"garbage\r\n"
            pty.write(data)
            wait_until(lambda: capture.stats.bytes == len(data), "capture to read every byte")
    # the final metrics of a stopping capture are written too
    (path,) = (landing / "_metrics").iterdir()
    assert path.name == f"{capture.stream}.json"
    doc = json.loads(path.read_text())
    assert (doc["stream"], doc["port"], doc["buffer_capacity"]) == (capture.stream, pty.path, capture.config.buffer_size)
    assert doc["totals"] == {"bytes": len(data), "lines": 101, "readings": 100, "rejected": 1, "dropped": 0,
                             "files": capture.stats.files, "disconnects": 0}  # fmt: skip
    assert (doc["interval"]["readings"], doc["interval"]["rejected"], doc["interval"]["dropped"], doc["interval"]["drop_rate"]) == (100, 1, 0, 0.0)
    # and the micro-batch never takes it for a landing file
    assert all(p.parent.name != "_metrics" for p in pending_landing_files(landing))
