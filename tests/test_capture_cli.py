"""The ``iot-platform capture`` command: the real console script, real signals, real errors."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import threading

import pytest
from conftest_serial import PtyPair, cli_command, csv_line, read_landing, wait_until

from iot_platform.cli import main
from iot_platform.io.landing import landing_files, read_quarantine


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_flushes_everything_read_and_exits_0(tmp_path, sig):
    data = tmp_path / "data"
    with PtyPair() as pty:
        proc = subprocess.Popen(
            # a rotation far away: whatever lands, the signal's flush wrote it; frequent metrics
            # lines tell the test how many bytes the capture has read
            [*cli_command(), "capture", "--port", pty.path, "--baud", "115200", "--rotate-seconds", "3600",
             "--metrics-interval", "0.05"],
            env={**os.environ, "IOT_DATA_DIR": str(data)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        log: list[str] = []
        started = threading.Event()

        def read_log() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                log.append(line)
                if " capturing " in line:
                    started.set()

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        try:
            wait_until(lambda: started.is_set() or proc.poll() is not None, "the capture to start", timeout=60)
            assert started.is_set(), "".join(log)
            sent = b"".join(csv_line(i) for i in range(2000)) + b"sensor_001,2000,23"
            pty.write(sent)
            wait_until(lambda: any(f"totals: {len(sent)} bytes" in line for line in log), "every byte read", 60)
            proc.send_signal(sig)
            out = proc.stdout.read()  # type: ignore[union-attr]
            assert proc.wait(timeout=30) == 0, "".join(log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)

    landing = data / "landing"
    assert len(landing_files(landing)) == 1  # written by the flush on the signal
    assert read_landing(landing).column("seq").to_pylist() == list(range(2000))
    records = read_quarantine(landing)
    assert [(r["code"], base64.b64decode(r["raw_b64"])) for r in records] == [("incomplete", b"sensor_001,2000,23")]
    assert out.strip() == (
        f"captured 2000 readings into 1 files under {landing_files(landing)[0].parent} "
        "(2001 lines, 1 rejected, 0 dropped, 0 disconnects)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "loop://", "--baud", "9601"],
         "Error: baud rate 9601 is not supported; expected one of 300, 600, 1200, 2400, 4800, 9600, 14400, 19200, "
         "28800, 38400, 57600, 74880, 115200, 230400, 250000, 460800, 500000, 921600, 1000000, 2000000"),
        (["--port", "loop://", "--format", "value", "--sensor-id", "a"],
         "Error: --format value needs --metric (one of temperature, humidity, pressure, vibration, battery_level)"),
        (["--port", "loop://", "--map", "temperature=t"],
         "Error: --map renames keys of kv and json lines; for csv use --columns"),
        (["--port", "loop://", "--columns", "sensor_id,temp"],
         "Error: column 'temp' is not known; expected one of sensor_id, seq, ts, temperature, humidity, pressure, "
         "vibration, battery_level, or _ to skip a field"),
        (["--port", "loop://", "--duration", "0"], "Error: --duration 0.0 is not valid; expected a positive number of seconds"),
        (["--port", "nope://x"],
         "Error: port 'nope://x' is not a device path or a supported URL; expected e.g. /dev/ttyACM0, socket://, "
         "rfc2217://, loop://"),
    ],
)  # fmt: skip
def test_cli_errors_are_actionable(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path))
    assert main(["capture", *argv]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message


def test_cli_missing_port(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path))
    assert main(["capture", "--port", str(tmp_path / "ttyUSB7")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"Error: serial port {tmp_path / 'ttyUSB7'} not found (ports present: ")
    assert err.endswith("check the cable and the port name; or pass --wait to wait for it")
    assert "Traceback" not in err


def test_cli_duration_stops_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path))
    with PtyPair() as pty:
        assert main(["capture", "--port", pty.path, "--duration", "0.2"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"captured 0 readings into 0 files under {tmp_path / 'landing' / ('serial-' + pty.path[5:].replace('/', '-'))} "
        "(0 lines, 0 rejected, 0 dropped, 0 disconnects)"
    )
