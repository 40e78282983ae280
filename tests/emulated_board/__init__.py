"""The project's emulated sensor board: build ``fw.c`` with avr-gcc, run it in QEMU on a pty.

``emulated_board(build_dir, ...)`` builds the firmware into ``build_dir`` (never
into the source tree), starts ``qemu-system-avr -machine uno`` with the board's
USART on a pseudo-terminal, and yields the pty's path. ``expected_lines`` is a
Python model of the firmware's output, so that a test can check every byte the
board sent.

What QEMU 7.2 does that matters here: it discards what the board prints while
no process has the pty open (so a test pauses the board, opens the port, then
restarts the stream with ``r``); the emulator keeps about one host core busy
(``sleep`` never wakes up, the firmware busy-polls), so it is stopped as soon
as the test is done and dies with the test process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).with_name("fw.c")
DEBIAN_PACKAGES = ("qemu-system-misc", "gcc-avr", "binutils-avr", "avr-libc")
TOOLS = ("qemu-system-avr", "avr-gcc")
INSTALL_LINE = f"apt-get install -y --no-install-recommends {' '.join(DEBIAN_PACKAGES)}"

SENSOR_ID = "sensor_001"
SEED = 20240101
BAD_SEED = 0x2545F491
BAD_EVERY = 9  # fw.c's default: one malformed line before seq 9, 18, 27, ...
# The reject code capture gives each malformed kind 0..6 of fw.c (6: a fragment glued to the next reading).
BAD_CODES = ("field_count", "decode", "field_count", "non_finite", "empty", "field_count", "fragment")
FRAGMENT_MAX = 32  # fw.c: a fragment is the first 1..32 bytes of the coming reading

_PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def require_board() -> None:
    """Skip, saying exactly what to install, when QEMU or avr-gcc is missing (or IOT_SKIP_EMULATOR=1).

    tests/conftest.py installs the packages first when it runs as root with apt-get.
    """
    if os.environ.get("IOT_SKIP_EMULATOR") == "1":
        pytest.skip("IOT_SKIP_EMULATOR=1")
    missing = missing_tools()
    if missing:
        pytest.skip(f"the emulated board needs {', '.join(missing)}: run `{INSTALL_LINE}` as root")


def build_firmware(build_dir: Path, *, period_ms: int = 100, bad_every: int | None = None, seed: int | None = None) -> Path:
    """Compile fw.c for the ATmega328P into ``build_dir``; returns the ELF's path.

    An option left at ``None`` is not passed, so the firmware's own default holds.
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    defines = [f"-DPERIOD_MS={period_ms}"]
    if bad_every is not None:
        defines.append(f"-DBAD_EVERY={bad_every}")
    if seed is not None:
        defines.append(f"-DSEED={seed}UL")
    elf = build_dir / ("fw-" + "-".join(d.removeprefix("-D") for d in defines) + ".elf")
    cmd = [
        "avr-gcc", "-mmcu=atmega328p", "-Os", "-std=gnu99", "-Wall", "-Wextra",
        "-DF_CPU=16000000UL", *defines, "-o", str(elf), str(FIRMWARE),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or proc.stderr.strip():
        raise AssertionError(f"avr-gcc failed or warned ({proc.returncode}):\n{proc.stderr}")
    return elf


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, so no emulator is left spinning."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def emulated_board(build_dir: Path, **firmware_options: int | None) -> Iterator[str]:
    """Run the board in QEMU; yields its pty path (e.g. /dev/pts/5). Close the port before leaving."""
    elf = build_firmware(build_dir, **firmware_options)
    log_path = build_dir / f"qemu-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["qemu-system-avr", "-machine", "uno", "-bios", str(elf),
             "-display", "none", "-monitor", "none", "-serial", "pty"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (match := _PTY_LINE.search(log_path.read_bytes())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"qemu-system-avr gave no pty (exit {proc.poll()}): {log_path.read_text()!r}")
            time.sleep(0.01)
        yield match.group(1).decode()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # QEMU blocked writing to a pty nobody reads ignores SIGTERM
            proc.kill()
            proc.wait(5)


# -- the Python model of fw.c ----------------------------------------------------------


class _Lcg:
    def __init__(self, seed: int):
        self.state = seed

    def next(self) -> int:
        self.state = (self.state * 1664525 + 1013904223) & 0xFFFFFFFF
        return self.state >> 16


def _walk(v: int, r: int, span: int, lo: int, hi: int) -> int:
    return min(max(v + (r & 0xFFFF) % (2 * span + 1) - span, lo), hi)


def _fixed(v: int, scale: int) -> str:
    return f"{v // scale}.{v % scale:0{len(str(scale)) - 1}d}"


def expected_lines(n_readings: int, *, bad_every: int = BAD_EVERY, seed: int = SEED) -> list[tuple[str, bytes]]:
    """What the board prints after a restart: ``(kind, line)`` pairs, ``kind`` a reject code or "reading".

    The lines include their ``\\r\\n``, except a ``fragment``: it has no end of
    line, so the reading after it arrives on the same line. Joined, the lines
    are the exact byte stream.
    """
    rng, bad = _Lcg(seed), _Lcg(BAD_SEED)
    temp, hum, pres, vib, batt = 2150, 480, 10130, 0, 1000
    out: list[tuple[str, bytes]] = []
    bad_kind = 0
    fragment_len = 0

    def text(seq: int, fields: int = 6, nan_temp: bool = False) -> bytes:
        parts = [SENSOR_ID, str(seq), "nan" if nan_temp else _fixed(temp, 100), _fixed(hum, 10),
                 _fixed(pres, 10), _fixed(vib, 100), _fixed(batt, 10)]  # fmt: skip
        return ",".join(parts[: fields + 1]).encode()

    for seq in range(n_readings):
        if bad_every and seq and seq % bad_every == 0:
            kind, bad_kind = bad_kind, (bad_kind + 1) % len(BAD_CODES)
            if kind == 0:
                line = text(seq)[: 1 + bad.next() % 24]
            elif kind == 1:
                n = 3 + bad.next() % 10
                line = b"\xff\x00" + bytes(0xFE if (b := bad.next() & 0xFF) in (10, 13) else b for _ in range(n))
            elif kind == 2:
                line = text(seq, fields=4)
            elif kind == 3:
                line = text(seq, nan_temp=True)
            elif kind == 4:
                line = b""
            elif kind == 5:
                line = text(seq) + b",7"
            else:  # fragment: cut from the coming reading, whose values are drawn below
                fragment_len = 1 + bad.next() % FRAGMENT_MAX
            if kind != 6:
                out.append((BAD_CODES[kind], line + b"\r\n"))
        temp = _walk(temp, rng.next(), 15, 500, 4500)
        hum = _walk(hum, rng.next(), 5, 100, 950)
        pres = _walk(pres, rng.next(), 3, 9500, 10500)
        vib = rng.next() % 60
        if (rng.next() & 63) == 0 and batt > 0:
            batt -= 1
        if fragment_len:
            out.append(("fragment", text(seq)[:fragment_len]))
            fragment_len = 0
        out.append(("reading", text(seq) + b"\r\n"))
    return out
