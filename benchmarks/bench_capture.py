"""Capture throughput: a pseudo-terminal flooded as fast as it can be written.

A child process writes N default-format CSV lines into the master side of a
pty as fast as the kernel takes them; the capture (reader thread + writer,
in this process) reads the slave side, parses and spools to Parquet in a
temporary landing zone. Reported: lines per second from the first byte to
the last reading published in a landing file, for the ``block`` policy
(lossless: the flood waits for capture, so this is capture's ceiling) and
for the default ``drop_oldest`` policy (the flood never waits; drops are
counted). Also the parser alone, vectorized batch versus line by line.

    python benchmarks/bench_capture.py [--lines 1000000]

Benchmarks are not tests: this prints a markdown table and asserts nothing
except that every line was accounted for.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from iot_platform.core.buffer import DropPolicy
from iot_platform.core.serial_protocol import LineFormat, LineParser
from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.landing import landing_files

FLOODER = """
import os, sys
fd = int(sys.argv[1])
data = open(sys.argv[2], "rb").read()
view = memoryview(data)
while view:
    view = view[os.write(fd, view[:1 << 16]):]
"""


def make_lines(n: int) -> bytes:
    """n lines like the emulated board prints, 100 sensors, values varying."""
    rng = np.random.default_rng(1)
    temp = 20 + rng.normal(0, 2, n)
    hum = 45 + rng.normal(0, 5, n)
    out = [
        b"sensor_%03d,%d,%.2f,%.1f,1013.2,0.31,98.7\r\n" % (i % 100, i // 100, temp[i], hum[i]) for i in range(n)
    ]
    return b"".join(out)


def run_capture(payload: Path, n: int, policy: DropPolicy, workdir: Path) -> dict:
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    landing = workdir / f"landing-{policy.value}"
    config = CaptureConfig(port=port, baud=115200, drop_policy=policy, rotate_seconds=5.0, metrics_interval=3600)
    capture = Capture(config, landing)
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    if not capture.connected.wait(10):
        raise RuntimeError("capture did not open the pty")
    t0 = time.perf_counter()
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(master), str(payload)], pass_fds=[master])
    while capture.stats.lines < n:
        if not thread.is_alive():
            raise RuntimeError("capture stopped early")
        time.sleep(0.002)
    t_read = time.perf_counter()
    flooder.wait()
    capture.stop()
    thread.join()
    t_done = time.perf_counter()
    os.close(master)
    os.close(slave)
    spooled = sum(pq.read_metadata(p).num_rows for p in landing_files(landing))
    s = capture.stats
    assert spooled == s.spooled and spooled + s.dropped + s.rejected == n, (spooled, s)
    return {
        "policy": policy.value,
        "lines": n,
        "spooled": spooled,
        "dropped": s.dropped,
        "files": s.files,
        "read_rate": n / (t_read - t0),
        "rate": spooled / (t_done - t0),
        "seconds": t_done - t0,
    }


def parser_rates(n: int = 200_000) -> tuple[float, float]:
    lines = make_lines(n).split(b"\n")[:-1]
    parser = LineParser(LineFormat())
    received = np.arange(n, dtype=np.int64)
    parser.parse_batch(lines[:1000], received[:1000], "x")  # warm up Arrow
    t = time.perf_counter()
    for start in range(0, n, 50_000):
        parser.parse_batch(lines[start : start + 50_000], received[start : start + 50_000], "x")
    batch = n / (time.perf_counter() - t)
    m = 50_000
    t = time.perf_counter()
    for line in lines[:m]:
        parser.parse_line(line)
    single = m / (time.perf_counter() - t)
    return batch, single


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_capture_") as tmp:
        work = Path(tmp)
        payload = work / "flood.txt"
        payload.write_bytes(make_lines(args.lines))
        results = [run_capture(payload, args.lines, policy, work) for policy in (DropPolicy.BLOCK, DropPolicy.DROP_OLDEST)]
    batch, single = parser_rates()
    cpus = len(os.sched_getaffinity(0))
    print(f"\n### Capture throughput ({args.lines:,} lines, {cpus} CPUs, Python {sys.version.split()[0]})\n")
    print("| measurement | lines/s | notes |")
    print("|---|---:|---|")
    for r in results:
        print(
            f"| pty flood -> parsed and spooled, `{r['policy']}` | {r['rate']:,.0f} | "
            f"read at {r['read_rate']:,.0f}/s; {r['spooled']:,} spooled in {r['files']} files, "
            f"{r['dropped']:,} dropped, {r['seconds']:.1f} s |"
        )
    print(f"| parser alone, vectorized `parse_batch` | {batch:,.0f} | batches of 50,000 lines |")
    print(f"| parser alone, `parse_line` one by one | {single:,.0f} | the per-line fallback |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
