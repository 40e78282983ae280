"""Helpers shared by the serial and import tests (imported explicitly, not a conftest).

Real peers only: pseudo-terminal pairs from ``os.openpty``, the project's own
QEMU-emulated board (``tests/emulated_board``), pyserial's ``loop://``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iot_platform.core.schemas import LANDING
from iot_platform.io.capture import Capture, CaptureStats
from iot_platform.io.landing import landing_files


def cli_command() -> list[str]:
    """The installed ``iot-platform`` console script (the real entry point) for subprocess tests."""
    script = Path(sys.executable).with_name("iot-platform")
    if script.is_file():
        return [str(script)]
    found = shutil.which("iot-platform")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from iot_platform.cli import main; sys.exit(main())"]


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)


class PtyPair:
    """A pseudo-terminal: the test writes "device" bytes to the master, capture opens ``path``.

    To know that capture has read what was written, wait on capture's own byte
    count: FIONREAD on the slave misses bytes still in the kernel's flip buffer.

    ``link`` gives the slave a stable path (like udev's /dev/serial/by-id), so
    that a test can unplug the device (close the pair) and plug in a new one
    behind the same path.
    """

    def __init__(self, link: Path | None = None):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF translation before pyserial configures it
        self.name = os.ttyname(self.slave)
        self.link = link
        if link is not None:
            os.symlink(self.name, link)
        self.path = str(link) if link is not None else self.name

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def close(self) -> None:
        """Unplug: the stable path goes first (as udev removes it), then the device."""
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def running(capture: Capture, timeout: float = 15.0) -> Iterator[Capture]:
    """Run ``capture`` in a thread; on exit stop it, join it and re-raise what it raised."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["stats"] = capture.run()
        except BaseException as exc:  # handed to the test thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="capture-under-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: capture.connected.is_set() or not thread.is_alive(), "the capture to open its port", timeout)
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        yield capture
    finally:
        capture.stop()
        thread.join(timeout)
        assert not thread.is_alive(), "capture did not stop"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    assert isinstance(result.get("stats"), CaptureStats)


def read_landing(landing_root: Path, stream: str | None = None) -> pa.Table:
    """All published landing files (checking each has exactly the LANDING schema)."""
    tables = []
    for path in landing_files(landing_root, stream):
        t = pq.read_table(path)
        assert t.schema.equals(LANDING), f"{path.name} has schema {t.schema}"
        tables.append(t)
    return pa.concat_tables(tables) if tables else LANDING.empty_table()


def hidden_files(directory: Path) -> list[Path]:
    """Leftover temp files (names starting with '.') anywhere under ``directory``."""
    return [p for p in directory.rglob(".*") if p.is_file()]


def csv_line(seq: int, sensor: str = "sensor_001") -> bytes:
    """A valid default-format line whose values follow from ``seq`` (for exact checks)."""
    return b"%s,%d,%.2f,%.1f,%.1f,%.2f,%.1f\r\n" % (
        sensor.encode(), seq, 20 + (seq % 50) / 10, 40 + seq % 7, 1000 + seq % 13, (seq % 11) / 100, 100 - seq % 3
    )


def csv_values(seq: int) -> dict[str, float]:
    return {
        "temperature": round(20 + (seq % 50) / 10, 2),
        "humidity": float(40 + seq % 7),
        "pressure": float(1000 + seq % 13),
        "vibration": round((seq % 11) / 100, 2),
        "battery_level": float(100 - seq % 3),
    }


def read_until(fd: int, marker: bytes, timeout: float = 10.0) -> bytes:
    """Read ``fd`` until ``marker`` has been seen; returns everything read."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {seen[-200:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 4096)
    return seen
