"""A port that goes away mid-capture and comes back: nothing read is lost, capture resumes."""

from __future__ import annotations

import base64
import socket

import pytest
from conftest_serial import PtyPair, csv_line, read_landing, running, wait_until

from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import read_quarantine


def _config(port: str) -> CaptureConfig:
    return CaptureConfig(port=port, rotate_seconds=0.2, metrics_interval=60, backoff_initial=0.02, backoff_max=0.1)


def test_usb_unplug_and_replug_behind_a_stable_path(tmp_path):
    link = tmp_path / "ttyACM0"  # like /dev/serial/by-id/...: the same path for the new device
    landing = tmp_path / "landing"
    first = PtyPair(link=link)
    second = None
    capture = Capture(_config(str(link)), landing)
    try:
        with running(capture):
            sent = b"".join(csv_line(i) for i in range(100)) + b"sensor_001,100,2"  # cut mid-line
            first.write(sent)
            wait_until(lambda: capture.stats.bytes == len(sent), "capture to read the first device")
            assert capture.stats.lines == 100
            first.close()  # unplugged
            wait_until(lambda: capture.stats.disconnects == 1, "capture to notice the unplug")
            wait_until(lambda: capture.stats.open_failures >= 2, "capture to retry (and fail) twice")
            second = PtyPair(link=link)  # plugged in again
            wait_until(lambda: capture.stats.reconnects == 1, "capture to reopen the port")
            second.write(b"".join(csv_line(i) for i in range(100, 200)))
            wait_until(lambda: capture.stats.lines == 201, "every line")
    finally:
        first.close()
        if second is not None:
            second.close()
    assert read_landing(landing).sort_by("received_at").column("seq").to_pylist() == list(range(200))
    records = read_quarantine(landing)
    assert [(r["code"], r["reason"], base64.b64decode(r["raw_b64"])) for r in records] == [
        ("incomplete", "incomplete line: the port was lost before its end of line", b"sensor_001,100,2")
    ]
    assert (capture.stats.disconnects, capture.stats.reconnects, capture.stats.spooled) == (1, 1, 200)


def _listen(port: int = 0) -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(10)
    return srv


@pytest.mark.parametrize("close_right_after_sending", [False, True])
def test_socket_server_that_goes_away_and_comes_back(tmp_path, close_right_after_sending):
    srv = _listen()
    port = srv.getsockname()[1]
    capture = Capture(_config(f"socket://127.0.0.1:{port}"), tmp_path)
    with running(capture):
        conn, _ = srv.accept()
        conn.sendall(b"".join(csv_line(i) for i in range(50)))
        if not close_right_after_sending:  # else: the bytes and the close arrive together
            wait_until(lambda: capture.stats.lines == 50, "the first 50 lines")
        conn.close()
        srv.close()  # the server is gone: reconnects are refused for a while
        wait_until(lambda: capture.stats.disconnects == 1, "capture to notice")
        wait_until(lambda: capture.stats.open_failures >= 2, "reconnects to be refused twice")
        srv = _listen(port)
        conn, _ = srv.accept()
        wait_until(lambda: capture.stats.reconnects == 1, "capture to reconnect")
        conn.sendall(b"".join(csv_line(i) for i in range(50, 100)))
        wait_until(lambda: capture.stats.lines == 100, "every line")
    conn.close()
    srv.close()
    assert read_landing(tmp_path).sort_by("received_at").column("seq").to_pylist() == list(range(100))
    assert read_quarantine(tmp_path) == []
    assert (capture.stats.disconnects, capture.stats.reconnects) == (1, 1)
