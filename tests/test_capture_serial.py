"""Capture from real serial peers: pseudo-terminals and pyserial's loop://."""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import grp
import os
import subprocess
import tempfile
import threading

import pyarrow.compute as pc
import pytest
import serial
from conftest_serial import PtyPair, cli_command, csv_line, csv_values, hidden_files, read_landing, running, wait_until

from iot_platform.core.buffer import DropPolicy
from iot_platform.core.serial_protocol import LineFormat
from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import landing_files, read_quarantine
from iot_platform.io.serial_port import PortError, RetrySchedule, open_port, read_chunk

UTC = dt.timezone.utc


def _config(port: str, **kwargs) -> CaptureConfig:
    kwargs.setdefault("rotate_seconds", 0.2)
    kwargs.setdefault("metrics_interval", 60)
    return CaptureConfig(port=port, **kwargs)


def test_pty_capture_spools_every_valid_line_and_quarantines_the_rest(tmp_path):
    landing = tmp_path / "landing"
    with PtyPair() as pty:
        capture = Capture(_config(pty.path), landing)
        with running(capture):
            good = b"".join(csv_line(i) for i in range(500))
            bad = (
                b"# arduino_emu fw v1\r\n"  # a comment, not a reading
                b"\xff\x00\xfe\x13junk\r\n"
                b"\r\n"
                b"sensor_001,17,23.4\r\n"
                b"sensor_001,18,nan,ERR,1013.2,0.31,98.7\r\n"
                b"sensor_001,19,20000,1,1,1,1\r\n"
                b"sensor_001,20,-127,255,1,1,1\r\n"  # kept: a broken sensor, inside INGEST_LIMITS
                b"sensor_001,21,23.5,45"  # no end of line when capture stops
            )
            pty.write(good[:1000])
            pty.write(good[1000:] + bad)  # a line split across writes
            wait_until(lambda: capture.stats.bytes == len(good + bad), "capture to read every byte")
            assert capture.stats.lines == 507
        stats = capture.stats

    table = read_landing(landing).sort_by("received_at")
    assert table.column("seq").to_pylist() == [*range(500), 20]
    rows = table.to_pylist()
    for seq in (0, 1, 137, 499):
        row = rows[seq]
        assert {m: row[m] for m in csv_values(seq)} == csv_values(seq)
        assert (row["sensor_id"], row["source"], row["ts"]) == ("sensor_001", f"serial:{pty.path}", row["received_at"])
    assert rows[500]["temperature"] == -127.0 and rows[500]["humidity"] == 255.0
    received = table.column("received_at").to_pylist()
    assert received == sorted(set(received))  # strictly increasing: arrival order, unique (sensor_id, ts)

    records = read_quarantine(landing)
    assert [(r["code"], r["line"]) for r in records] == [
        ("decode", 502), ("empty", 503), ("field_count", 504), ("non_finite", 505), ("out_of_limits", 506),
        ("incomplete", 508),
    ]  # fmt: skip
    assert [base64.b64decode(r["raw_b64"]) for r in records] == [
        b"\xff\x00\xfe\x13junk\r", b"\r", b"sensor_001,17,23.4\r", b"sensor_001,18,nan,ERR,1013.2,0.31,98.7\r",
        b"sensor_001,19,20000,1,1,1,1\r", b"sensor_001,21,23.5,45",
    ]  # fmt: skip
    assert records[5]["reason"] == "incomplete line: capture stopped before its end of line"
    assert all(r["source"] == f"serial:{pty.path}" for r in records)
    assert (stats.lines, stats.readings, stats.spooled, stats.comments, stats.rejected, stats.dropped) == (
        508, 501, 501, 1, 6, 0
    )
    assert stats.files == len(landing_files(landing)) >= 1
    assert hidden_files(landing) == []


@pytest.mark.parametrize(
    ("fmt", "payload", "expected"),
    [
        (
            LineFormat(kind="kv", sensor_id="kv1", keys=(("temperature", "t"),)),
            b"t=21.5 humidity=40 seq=1\nt=bad\nid=x t=22 rssi=-70\n",
            [("kv1", 1, 21.5, 40.0), ("kv1", None, 22.0, None)],
        ),
        (
            LineFormat(kind="json"),
            b'{"sensor_id": "j1", "seq": 3, "temperature": 19.25}\n{"sensor_id": "j1"\n'
            b'{"sensor_id": "j2", "humidity": 55}\n',
            [("j1", 3, 19.25, None), ("j2", None, None, 55.0)],
        ),
        (
            LineFormat(kind="value", sensor_id="uno", metric="humidity", scale=0.1),
            b"450\r\n512\r\nERR\r\n",
            [("uno", None, None, 45.0), ("uno", None, None, 51.2)],
        ),
        (
            LineFormat(columns=("_", "temperature"), sensor_id="uno"),  # the board's FORMAT=2
            b"512,23.51\r\n513,23.49\r\n",
            [("uno", None, 23.51, None), ("uno", None, 23.49, None)],
        ),
    ],
    ids=["kv", "json", "value", "csv-subset"],
)
def test_pty_capture_other_line_formats(tmp_path, fmt, payload, expected):
    with PtyPair() as pty:
        capture = Capture(_config(pty.path, line_format=fmt), tmp_path)
        with running(capture):
            pty.write(payload)
            wait_until(lambda: capture.stats.lines == payload.count(b"\n"), "every line")
    rows = read_landing(tmp_path).sort_by("received_at").to_pylist()
    assert [(r["sensor_id"], r["seq"], r["temperature"], r["humidity"]) for r in rows] == expected
    assert capture.stats.rejected == payload.count(b"\n") - len(expected)


def test_loop_url_capture_and_bulk_reads(tmp_path):
    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write(b"".join(csv_line(i) for i in range(40)) + b"sensor_001,40,1,2\r\n")
    assert read_chunk(port)[:11] == b"sensor_001,"  # everything waiting, in one call
    port.write(b"".join(csv_line(i) for i in range(40)) + b"sensor_001,40,1,2\r\n")
    capture = Capture(_config("loop://"), tmp_path, opener=lambda: port)
    with running(capture):
        wait_until(lambda: capture.stats.lines == 41, "41 lines")
    assert read_landing(tmp_path, "serial-loop").column("seq").to_pylist() == list(range(40))
    assert [r["code"] for r in read_quarantine(tmp_path)] == ["field_count"]


def test_full_buffer_drops_and_counts(tmp_path):
    """A writer far slower than the port: drops happen, and every line is spooled or counted as dropped."""
    with PtyPair() as pty:
        config = _config(pty.path, buffer_size=50, drop_policy=DropPolicy.DROP_NEWEST)
        capture = Capture(config, tmp_path)
        original = capture._process

        def slow_writer(items):  # the writer stalls while the reader keeps reading
            capture.stop_event.wait(0.05)
            original(items)

        capture._process = slow_writer
        with running(capture):
            for chunk in range(20):
                pty.write(b"".join(csv_line(chunk * 50 + i) for i in range(50)))
            wait_until(lambda: capture.stats.lines == 1000, "every line framed")
        stats = capture.stats
    spooled = read_landing(tmp_path).column("seq").to_pylist()
    assert stats.dropped > 0
    assert len(spooled) + stats.dropped == 1000 == stats.lines
    assert len(set(spooled)) == len(spooled)
    assert spooled == sorted(spooled)  # drop_newest keeps a contiguous-then-gappy history in order


def test_port_that_appears_later_is_waited_for(tmp_path):
    link = tmp_path / "ttyLATE"
    capture = Capture(_config(str(link), wait_for_port=True, backoff_initial=0.02, backoff_max=0.05), tmp_path / "l")
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    try:
        with PtyPair(link=link) as pty:  # the device is plugged in
            wait_until(capture.connected.is_set, "capture to find the port")
            pty.write(csv_line(7))
            wait_until(lambda: capture.stats.readings == 1, "the reading")
            capture.stop()
            thread.join(10)
    finally:
        capture.stop()
        thread.join(10)
    assert read_landing(tmp_path / "l").column("seq").to_pylist() == [7]


# -- errors a person can act on ------------------------------------------------------------


def test_missing_port_error_says_what_to_do(tmp_path):
    with pytest.raises(PortError) as info:
        Capture(_config(str(tmp_path / "ttyUSB9")), tmp_path).run()
    assert info.value.kind == "not_found"
    assert str(info.value).startswith(f"serial port {tmp_path / 'ttyUSB9'} not found (ports present: ")
    assert str(info.value).endswith("check the cable and the port name")


def test_unsupported_baud_rate():
    with pytest.raises(PortError) as info:
        CaptureConfig(port="loop://", baud=9601)
    assert str(info.value).startswith("baud rate 9601 is not supported; expected one of 300, 600, 1200, 2400, 4800, 9600, 14400, 19200,")
    assert info.value.retryable is False


def test_not_a_serial_port(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(PortError) as info:
        open_port(str(f), 9600)
    assert str(info.value) == f"{f} is not a serial port (Inappropriate ioctl for device); expected a tty such as /dev/ttyUSB0 or /dev/ttyACM0"


def test_connection_refused_for_socket_url():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    with pytest.raises(PortError) as info:
        open_port(f"socket://127.0.0.1:{free}", 9600)
    assert (info.value.kind, info.value.retryable) == ("refused", True)
    assert str(info.value).startswith(f"cannot connect to socket://127.0.0.1:{free}: ")
    assert str(info.value).endswith("is the device server running?")


def test_port_in_use_by_another_capture():
    with PtyPair() as pty:
        first = open_port(pty.path, 9600)
        try:
            with pytest.raises(PortError) as info:
                open_port(pty.path, 9600)
        finally:
            first.close()
    assert info.value.kind == "busy"
    assert str(info.value).startswith(f"serial port {pty.path} is in use by another program")


def _without_dac_override() -> None:
    """In the child: drop root's power to ignore file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after the exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_permission_denied_names_the_group_to_join():
    """A real EACCES from open(2): a port whose mode lets its group in but not its owner, us."""
    with PtyPair() as pty:
        try:
            group = grp.getgrnam("dialout")
        except KeyError:
            group = grp.getgrgid(os.stat(pty.name).st_gid)
        if os.geteuid() == 0:
            os.chown(pty.name, 0, group.gr_gid)
        os.chmod(pty.name, 0o060)  # crw-rw---- for the group only, as /dev/ttyUSB0 is for dialout
        group_name = grp.getgrgid(os.stat(pty.name).st_gid).gr_name
        with tempfile.TemporaryDirectory() as data:
            proc = subprocess.run(
                [*cli_command(), "capture", "--port", pty.name],
                env={**os.environ, "IOT_DATA_DIR": data},
                capture_output=True, text=True, timeout=60,
                preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
            )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: permission denied opening {pty.name} (group {group_name}, mode c---rw----): add your user to the "
        f"group that owns it, e.g. `sudo usermod -aG {group_name} $USER` (the group is dialout on Debian/Ubuntu, "
        "uucp on Arch), then log out and back in"
    )


def test_retry_schedule_validates_itself():
    # the schedule itself: tests/test_capture_recovery.py
    with pytest.raises(ValueError, match=r"^retry first 0, interval 0.05 and maximum 0.25 must satisfy"):
        RetrySchedule(first=0)
    with pytest.raises(ValueError, match=r"^retry first 0.01, interval 1 and maximum 0.25 must satisfy"):
        RetrySchedule(interval=1)
    with pytest.raises(ValueError, match=r"^backoff_initial 1 is not valid; expected at most backoff_max 0.25$"):
        CaptureConfig(port="loop://", backoff_initial=1)


def test_capture_config_validates_itself():
    with pytest.raises(ValueError, match=r"^rotate_seconds 0 is not valid; expected a positive number of seconds$"):
        CaptureConfig(port="loop://", rotate_seconds=0)
    with pytest.raises(ValueError, match=r"^buffer_size 0 is not valid"):
        CaptureConfig(port="loop://", buffer_size=0)
    with pytest.raises(ValueError, match=r"^drop policy 'x' is not supported"):
        CaptureConfig(port="loop://", drop_policy="x")


def test_received_at_is_utc_now(tmp_path):
    with PtyPair() as pty:
        capture = Capture(_config(pty.path), tmp_path)
        with running(capture):
            before = dt.datetime.now(UTC)
            pty.write(csv_line(1))
            wait_until(lambda: capture.stats.readings == 1, "the reading")
            after = dt.datetime.now(UTC)
    t = read_landing(tmp_path)
    received = t.column("received_at")[0].as_py()
    assert before <= received <= after
    assert pc.all(pc.equal(t.column("ts"), t.column("received_at"))).as_py()


def test_bytes_without_end_of_line_are_cut_and_quarantined(tmp_path):
    """What a wrong baud rate looks like: a stream of bytes and no newline; memory stays bounded."""
    noise = bytes(range(0x80, 0x100)) * 2  # 256 bytes, no b"\n"
    with PtyPair() as pty:
        capture = Capture(_config(pty.path, max_line_bytes=64), tmp_path)
        with running(capture):
            pty.write(noise + b"\r\n" + csv_line(5))
            wait_until(lambda: capture.stats.readings == 1, "the valid line after the noise")
    records = read_quarantine(tmp_path)
    assert {r["code"] for r in records} == {"too_long"}
    assert b"".join(base64.b64decode(r["raw_b64"]) for r in records) == noise + b"\r"  # nothing lost, in order
    assert records[0]["reason"] == (
        "line longer than 64 bytes without an end of line (wrong baud rate or binary data?)"
    )
    assert read_landing(tmp_path).column("seq").to_pylist() == [5]


def test_refused_lines_of_one_batch_are_quarantined_in_line_order(tmp_path):
    """A batch can hold parse rejects and a cut-off tail; the records keep the arrival order."""
    capture = Capture(_config("loop://"), tmp_path)
    t = 1_763_823_662_000_000
    capture._process([(1, t, b"\xff\x00\r", None), (2, t + 1, csv_line(0), None), (3, t + 2, b"sensor_001,1,2", "stopped")])
    capture._flush()
    assert [(r["line"], r["code"]) for r in read_quarantine(tmp_path)] == [(1, "decode"), (3, "incomplete")]
    assert read_landing(tmp_path).column("seq").to_pylist() == [0]
