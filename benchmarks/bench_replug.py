"""Lines lost across USB unplug/replug cycles: a pty behind a stable symlink, unplugged 8 times.

A "device" thread plays a board on a pseudo-terminal behind a symlink (like
``/dev/serial/by-id/...``): it prints a numbered CSV line every ``--period``
seconds from the moment it is plugged in, like a board that starts talking
at power-up. Each cycle it talks for ``--uptime`` seconds, is unplugged (the
link removed, the pty closed) for a random 0.01-1.8 s (seeded), and comes
back as a new pty behind the same link. Writes never block: when the pty's
input queue is full (nobody reading) the line is lost, as on a real UART.
Capture runs with its defaults in this process. Reported: lines printed, lines
captured, lines lost and where (never written, or written but not captured).

    python benchmarks/bench_replug.py [--cycles 8] [--period 0.002] [--uptime 0.5] [--seed 7]

Benchmarks are not tests: this prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import random
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

import pyarrow.parquet as pq

from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import landing_files, read_quarantine


def line(seq: int) -> bytes:
    return b"sensor_001,%d,23.51,45.2,1013.2,0.31,98.7\r\n" % seq


class Board:
    """Prints numbered lines on a pty behind ``link`` while plugged in."""

    def __init__(self, link: Path, period: float):
        self.link = link
        self.period = period
        self.printed = 0  # lines the board tried to print (seq 0 .. printed - 1)
        self.written: list[int] = []  # seqs the pty accepted
        self.master = self.slave = -1

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        os.symlink(os.ttyname(self.slave), self.link)

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def talk(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end:
            seq = self.printed
            self.printed += 1
            try:
                if os.write(self.master, line(seq)) == len(line(seq)):
                    self.written.append(seq)
            except OSError as exc:  # the queue is full: a UART with nobody reading drops the byte
                if exc.errno != errno.EAGAIN:
                    raise
            next_at += self.period
            time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--period", type=float, default=0.002)
    ap.add_argument("--uptime", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(args.seed)
    downtimes = [rng.uniform(0.01, 1.8) for _ in range(args.cycles)]
    with tempfile.TemporaryDirectory(prefix="bench_replug_") as tmp:
        link = Path(tmp) / "ttyACM0"
        landing = Path(tmp) / "landing"
        board = Board(link, args.period)
        board.plug()
        capture = Capture(CaptureConfig(port=str(link), rotate_seconds=0.5, metrics_interval=3600), landing)
        thread = threading.Thread(target=capture.run, daemon=True)
        thread.start()
        while not capture.connected.is_set():
            time.sleep(0.01)
        for down in downtimes:
            board.talk(args.uptime)
            time.sleep(0.05)  # the last line reaches the reader before the unplug
            board.unplug()
            time.sleep(down)
            board.plug()
        board.talk(args.uptime)
        deadline = time.monotonic() + 10
        while capture.stats.readings < len(board.written) and time.monotonic() < deadline:
            time.sleep(0.05)
        capture.stop()
        thread.join(30)
        board.unplug()
        seqs = set()
        for path in landing_files(landing):
            seqs.update(pq.read_table(path, columns=["seq"]).column("seq").to_pylist())
        quarantined = len(read_quarantine(landing))
    written = set(board.written)
    never_written = board.printed - len(written)
    not_captured = len(written - seqs)
    lost = board.printed - len(seqs & set(range(board.printed)))
    print(f"\n### Unplug/replug ({args.cycles} cycles, downtime 0.01-1.8 s, a line every {args.period * 1000:g} ms, "
          f"{args.uptime:g} s up per cycle)\n")  # fmt: skip
    print("| measurement | value |")
    print("|---|---:|")
    print(f"| lines printed by the board | {board.printed:,} |")
    print(f"| lines captured | {len(seqs):,} |")
    print(f"| lost | {lost:,} ({100 * lost / board.printed:.2f} %) |")
    print(f"| of which the pty refused (queue full, nobody reading) | {never_written:,} |")
    print(f"| of which written but not captured | {not_captured:,} |")
    print(f"| quarantine records | {quarantined} |")
    print(f"| reconnects | {capture.stats.reconnects} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
