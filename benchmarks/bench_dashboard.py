"""How fast `iot-platform dashboard` paints: 1,000 sensors, and one sensor over 7 days.

    python benchmarks/bench_dashboard.py [--sensors 1000] [--keep DIR]

A synthetic lake is written with numpy (no simulator: the point is the dashboard's reads):
seven days of `readings` (the newest day every 10 s, the six before every 60 s), `window_stats`
(300 s windows every 60 s) and about three anomaly episodes per sensor-day, one Parquet file per
day sorted by (sensor, time) as a finalized day is. Then, against the app on a real HTTP server:

* first paint: a fresh headless chromium loads the page until the first page of tiles and the
  chart are drawn (includes the first scan of the newest day for every sensor's last reading);
* refresh: one `dcc.Interval` tick's two callbacks (fleet, chart) as HTTP requests to the running
  app, median of 5, for a 1-hour and a 7-day sensor view.
Targets: first paint < 2 s, refresh < 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
US = 1_000_000
LAST_DAY = dt.date(2024, 1, 10)


def synth_lake(root: Path, n: int) -> None:
    from iot_platform.core.schemas import ANOMALIES, READINGS, WINDOW_STATS, conform
    from iot_platform.io.lake import Lake

    lake = Lake(root)
    rng = np.random.default_rng(1)
    ids = np.array([f"sensor_{i:04d}" for i in range(n)], dtype=object)
    for k in range(7):
        day = LAST_DAY - dt.timedelta(days=6 - k)
        d0 = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * US
        step = 10 if day == LAST_DAY else 60
        per = 86_400 // step
        sid = np.repeat(ids, per)
        ts = np.tile(d0 + np.arange(per, dtype=np.int64) * step * US, n)
        base = np.repeat(rng.uniform(18, 26, n), per)
        temp = base + 2 * np.sin(ts / US / 86_400 * 2 * np.pi) + rng.normal(0, 0.15, n * per)
        r = pa.table({"sensor_id": sid, "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")), "temperature": temp,
                      "humidity": 60 - 1.5 * (temp - 22), "pressure": np.full(n * per, 1013.0), "vibration": rng.uniform(0.1, 0.5, n * per),
                      "battery_level": np.full(n * per, 80.0), "source": pa.nulls(n * per, pa.string()), "seq": pa.nulls(n * per, pa.int64())})  # fmt: skip
        lake.replace_partition("readings", day, conform(r, READINGS))
        wper = 1440
        wend = np.tile(d0 + (np.arange(wper, dtype=np.int64) + 1) * 60 * US, n)
        wmean = np.repeat(rng.uniform(18, 26, n), wper) + 2 * np.sin(wend / US / 86_400 * 2 * np.pi)
        w = pa.table({"sensor_id": np.repeat(ids, wper), "window_start": pa.array(wend - 300 * US).cast(pa.timestamp("us", tz="UTC")),
                      "window_end": pa.array(wend).cast(pa.timestamp("us", tz="UTC")), "n_readings": np.full(n * wper, 300 // step),
                      "temp_mean": wmean, "temp_std": np.full(n * wper, 0.15), "temp_min": wmean - 0.4, "temp_max": wmean + 0.4,
                      "humidity_mean": 60 - 1.5 * (wmean - 22), "pressure_mean": np.full(n * wper, 1013.0),
                      "vibration_mean": np.full(n * wper, 0.3), "vibration_max": np.full(n * wper, 0.5),
                      "battery_level": np.full(n * wper, 80.0), "missing_rate": np.zeros(n * wper)})  # fmt: skip
        lake.replace_partition("window_stats", day, conform(w, WINDOW_STATS))
        m = 3 * n
        start = d0 + rng.integers(0, 86_000, m) * US
        a = pa.table({"anomaly_id": [f"a{k}-{i}" for i in range(m)], "sensor_id": rng.choice(ids, m), "anomaly_type": ["spike"] * m,
                      "severity": rng.choice(["warning", "critical"], m), "metric": ["temperature"] * m,
                      "start_ts": pa.array(start).cast(pa.timestamp("us", tz="UTC")), "end_ts": pa.array(start + 20 * US).cast(pa.timestamp("us", tz="UTC")),
                      "value": rng.uniform(30, 40, m), "threshold": np.full(m, 5.0), "score": rng.uniform(3, 9, m), "n_points": np.ones(m, np.int64),
                      "systemic_id": pa.nulls(m, pa.string()), "message": ["synthetic spike"] * m})  # fmt: skip
        lake.replace_partition("anomalies", day, conform(a, ANOMALIES), metadata={"iot.until_us": str(d0 + 86_400 * US)})


def post(url: str, body: dict) -> float:
    req = urllib.request.Request(url + "_dash-update-component", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
    return time.perf_counter() - t


def fleet_body(n: int) -> dict:
    outs = [("tiles", "children"), ("page-info", "children"), ("freshness", "children"), ("captures", "children"), ("alarms", "children"), ("group", "options")]
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in outs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outs],
            "inputs": [{"id": "tick", "property": "n_intervals", "value": n}, {"id": "group", "property": "value", "value": None},
                       {"id": "states", "property": "value", "value": ["stale", "silent", "critical", "warning", "ok"]},
                       {"id": "page", "property": "value", "value": 1}],
            "state": [{"id": "group", "property": "options", "value": None}],
            "changedPropIds": ["tick.n_intervals"]}  # fmt: skip


def chart_body(n: int, sensor: str, span: str) -> dict:
    return {"output": "chart.figure", "outputs": {"id": "chart", "property": "figure"},
            "inputs": [{"id": "tick", "property": "n_intervals", "value": n}, {"id": "sensor", "property": "value", "value": sensor},
                       {"id": "span", "property": "value", "value": span}, {"id": "day-store", "property": "data", "value": None}],
            "changedPropIds": ["tick.n_intervals"]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, default=1000)
    ap.add_argument("--verbose", action="store_true", help="list the page's requests and their timings")
    ap.add_argument("--keep", help="build (or reuse) the lake in this directory")
    args = ap.parse_args()
    from test_dashboard_browser import Served, browser

    from iot_platform.dashboard.app import create_app
    from iot_platform.io.lake import Lake

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="iot-bench-dash-"))
    t = time.perf_counter()
    if not Lake(root).days("readings"):
        synth_lake(root, args.sensors)
    print(f"lake: {args.sensors} sensors, 7 days, built in {time.perf_counter() - t:.1f} s at {root}")
    end_us = int(dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()) * US
    t = time.perf_counter()
    app = create_app(root, refresh_s=3600, clock=lambda: end_us)
    build_s = time.perf_counter() - t
    served = Served(app)
    driver = browser(Path(tempfile.mkdtemp(prefix="iot-bench-chromium-")))
    try:
        t = time.perf_counter()
        driver.get(served.url)
        tiles_s = chart_s = None
        while tiles_s is None or chart_s is None:
            if tiles_s is None and len(driver.find_elements("css selector", ".tile")) >= min(100, args.sensors):
                tiles_s = time.perf_counter() - t
            if chart_s is None and driver.execute_script("const g=document.querySelector('#chart .js-plotly-plot'); return g && g.data && g.data.length > 0"):
                chart_s = time.perf_counter() - t
            time.sleep(0.02)
        paint_s = max(tiles_s, chart_s)
        if args.verbose:
            for e in driver.execute_script("return performance.getEntriesByType('resource').map(e => [e.name.slice(-60), Math.round(e.startTime), Math.round(e.duration), e.transferSize])"):
                print(e)
        dcl_s = driver.execute_script("const t = performance.timing; return (t.domContentLoadedEventEnd - t.navigationStart) / 1000")
    finally:
        driver.quit()
    sensor = "sensor_0000"
    fleet = [post(served.url, fleet_body(i)) for i in range(1, 6)]
    hour = [post(served.url, chart_body(i, sensor, "1 h")) for i in range(1, 6)]
    week = [post(served.url, chart_body(i, sensor, "7 days")) for i in range(1, 6)]
    served.close()
    med = lambda xs: statistics.median(xs)  # noqa: E731
    print("| what | seconds |\n|---|---:|")
    print(f"| app start (layout: first scan of every sensor's last reading) | {build_s:.2f} |")
    print(f"| first paint in chromium (page, 100 tiles of {args.sensors}, 1-hour chart) | {paint_s:.2f} |")
    print(f"|   the page and its scripts (DOMContentLoaded) | {dcl_s:.2f} |")
    print(f"|   the tiles drawn | {tiles_s:.2f} |")
    print(f"|   the chart drawn | {chart_s:.2f} |")
    print(f"| refresh: fleet callback (median of 5) | {med(fleet):.3f} |")
    print(f"| refresh: sensor chart, 1 hour (median of 5) | {med(hour):.3f} |")
    print(f"| refresh: sensor chart, 7 days (median of 5) | {med(week):.3f} |")
    print(f"| one tick (fleet + 7-day chart, run in parallel by Dash) | {max(med(fleet), med(week)):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
