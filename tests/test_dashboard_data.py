"""The dashboard's reads (io.dashboard_data) over real Parquet in a tmp lake, and its CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import urllib.request

import numpy as np
import pyarrow as pa
import pytest

from alert_receivers import free_port
from conftest_serial import cli_command
from iot_platform.cli import main
from iot_platform.core.schemas import ANOMALIES, READINGS, WINDOW_STATS, conform
from iot_platform.io.dashboard_data import DashboardData

DAY = dt.date(2024, 1, 3)
US = 1_000_000
D0 = int(dt.datetime(2024, 1, 3, tzinfo=dt.UTC).timestamp()) * US


def readings(sensor: str, start_s: int, n: int, step_s: int = 1, temp0: float = 20.0) -> pa.Table:
    ts = D0 + (start_s + np.arange(n) * step_s) * US
    return conform(pa.table({"sensor_id": [sensor] * n, "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
                             "temperature": temp0 + np.arange(n, dtype=float)}), READINGS)  # fmt: skip


def test_last_readings_follow_new_parts(lake):
    lake.replace_partition("readings", DAY, pa.concat_tables([readings("a", 0, 100), readings("b", 0, 50, temp0=30.0)]))
    data = DashboardData(lake.root)
    got = data.last_readings()
    assert got.select(["sensor_id", "last_ts", "temperature"]).to_pylist() == [
        {"sensor_id": "a", "last_ts": D0 + 99 * US, "temperature": 119.0},
        {"sensor_id": "b", "last_ts": D0 + 49 * US, "temperature": 79.0},
    ]
    lake.write_part("readings", DAY, "mb-1", readings("b", 100, 2, temp0=5.0))
    assert data.last_readings().select(["sensor_id", "last_ts", "temperature"]).to_pylist() == [
        {"sensor_id": "a", "last_ts": D0 + 99 * US, "temperature": 119.0},
        {"sensor_id": "b", "last_ts": D0 + 101 * US, "temperature": 6.0},
    ]


def test_sensor_readings_raw_bucketed_or_none_by_span(lake):
    lake.replace_partition("readings", DAY, readings("a", 0, 4 * 3600))  # 4 h at 1 Hz
    data = DashboardData(lake.root)
    raw = data.sensor_readings("a", D0 + 10 * US, D0 + 20 * US)
    assert raw["ts"].to_pylist() == [D0 + s * US for s in range(10, 20)]
    assert raw["temperature"].to_pylist() == [20.0 + s for s in range(10, 20)]
    four_h = data.sensor_readings("a", D0, D0 + 4 * 3600 * US)  # more than 25 min: 1,500 buckets of 9.6 s
    assert four_h.num_rows == 1500
    assert four_h["ts"][0].as_py() == D0 and four_h["temperature"][0].as_py() == pytest.approx(20.0 + 4.5)  # mean of s = 0..9
    assert four_h["ts"][1].as_py() == D0 + 9_600_000  # the bucket of s = 10..19 (9.6 s .. 19.2 s)
    assert data.sensor_readings("a", D0, D0 + 2 * 86_400 * US).num_rows == 0  # beyond a day: windows only


def test_sensor_windows_and_episodes(lake):
    n = 3000
    ends = D0 + (np.arange(n) + 1) * 60 * US
    ws = pa.table({"sensor_id": ["a"] * n, "window_start": pa.array(ends - 300 * US).cast(pa.timestamp("us", tz="UTC")),
                   "window_end": pa.array(ends).cast(pa.timestamp("us", tz="UTC")), "n_readings": np.full(n, 300),
                   "temp_mean": np.arange(n, dtype=float), "temp_min": np.arange(n, dtype=float) - 1, "temp_max": np.arange(n, dtype=float) + 1})  # fmt: skip
    lake.replace_partition("window_stats", DAY, conform(ws.filter(pa.compute.less(ws["window_end"].cast(pa.int64()), D0 + 86_400 * US)), WINDOW_STATS))
    lake.replace_partition("window_stats", DAY + dt.timedelta(days=1), conform(ws.filter(pa.compute.greater_equal(ws["window_end"].cast(pa.int64()), D0 + 86_400 * US)), WINDOW_STATS))
    data = DashboardData(lake.root)
    hour = data.sensor_windows("a", D0, D0 + 3600 * US)
    assert hour["window_end"].to_pylist() == [D0 + (i + 1) * 60 * US for i in range(60)]
    days = data.sensor_windows("a", D0, D0 + 3000 * 60 * US)  # 3,000 windows: merged into 1,500 buckets of 120 s
    assert days.num_rows == 1500
    assert (days["temp_min"][0].as_py(), days["temp_max"][0].as_py()) == (-1.0, 2.0)  # the windows ending at 60 s and 120 s
    assert days["window_end"][-1].as_py() == D0 + 3000 * 60 * US
    ep = conform(pa.table({"anomaly_id": ["x", "y"], "sensor_id": ["a", "b"], "anomaly_type": ["spike", "spike"], "severity": ["critical", "warning"],
                           "metric": ["temperature"] * 2, "start_ts": pa.array([D0 + 60 * US] * 2).cast(pa.timestamp("us", tz="UTC")),
                           "end_ts": pa.array([D0 + 70 * US] * 2).cast(pa.timestamp("us", tz="UTC")), "value": [40.0, 41.0],
                           "score": [9.0, 4.0], "message": ["m", "n"]}), ANOMALIES)  # fmt: skip
    lake.replace_partition("anomalies", DAY, ep)
    assert data.sensor_episodes("a", D0, D0 + 3600 * US).select(["anomaly_id", "severity", "score"]).to_pylist() == [
        {"anomaly_id": "x", "severity": "critical", "score": 9.0}
    ]
    assert data.sensor_episodes("a", D0 + 71 * US, D0 + 3600 * US).num_rows == 0


def test_capture_health_and_freshness(lake, data_dir):
    d = data_dir / "landing" / "_metrics"
    d.mkdir(parents=True)
    (d / "usb0.json").write_text(json.dumps({"stream": "usb0", "interval": {"lines_per_s": 10.0}}))
    (d / ".usb1.json.1.tmp").write_text("{half")
    data = DashboardData(lake.root)
    assert data.capture_health() == [{"stream": "usb0", "interval": {"lines_per_s": 10.0}}]
    f = data.freshness(D0)
    assert (f.newest_reading_us, f.last_batch_us, f.batches, f.detection_until_us, f.open_alarms) == (D0, None, None, None, None)


def test_cli_refuses_a_bad_refresh_and_serves_the_page(data_dir, capsys):
    assert main(["dashboard", "--refresh", "0"]) == 2
    assert capsys.readouterr().err == "Error: --refresh 0.0 is invalid; expected a number of seconds > 0\n"
    port = free_port()
    proc = subprocess.Popen([*cli_command(), "dashboard", "--port", str(port), "--refresh", "2"],
                            env={**os.environ, "IOT_DATA_DIR": str(data_dir)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline() == f"Data root: {data_dir}\n"
        assert proc.stdout.readline() == f"Dashboard: http://127.0.0.1:{port} (refresh every 2 s)\n"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert "<title>iot-platform dashboard</title>" in page
    finally:
        proc.terminate()
        proc.wait(timeout=90)  # a guard against a hang, not a speed check (a loaded machine is slow to exit)


def test_an_empty_data_root_renders(data_dir):
    from iot_platform.dashboard.app import create_app

    outs = [("tiles", "children"), ("page-info", "children"), ("freshness", "children"), ("captures", "children"),
            ("alarms", "children"), ("group", "options")]  # fmt: skip
    fleet = {"output": ".." + "...".join(f"{i}.{p}" for i, p in outs) + "..", "outputs": [{"id": i, "property": p} for i, p in outs],
             "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}, {"id": "group", "property": "value", "value": None},
                        {"id": "states", "property": "value", "value": ["ok"]}, {"id": "page", "property": "value", "value": 1}],
             "state": [{"id": "group", "property": "options", "value": None}]}  # fmt: skip
    chart = {"output": "chart.figure", "outputs": {"id": "chart", "property": "figure"},
             "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}, {"id": "sensor", "property": "value", "value": None},
                        {"id": "span", "property": "value", "value": "7 days"}, {"id": "day-store", "property": "data", "value": None}]}  # fmt: skip
    client = create_app(data_dir).server.test_client()
    r = client.post("/_dash-update-component", json=fleet)
    assert r.status_code == 200
    got = r.get_json()["response"]
    assert got["tiles"]["children"] == []
    assert got["page-info"]["children"] == "page 1 of 1: 0 of 0 sensors (stale 0, silent 0, critical 0, warning 0, ok 0)"
    r = client.post("/_dash-update-component", json=chart)
    assert r.status_code == 200 and r.get_json()["response"]["chart"]["figure"]["data"] == []


def test_open_alarms_from_the_alert_store(data_dir):
    from iot_platform.core.alarms import Alarm
    from iot_platform.io.alert_store import AlertStore

    def alarm(aid, severity, status, first):
        return Alarm(aid, "s1", "spike", "temperature", severity, status, first, first, 30.0, 4.0, "m", (aid,), 0, 0)

    data = DashboardData(data_dir)
    assert (data.open_alarm_list(), data.open_alarms()) == ([], None)
    with AlertStore.at(data_dir) as store:
        for a in (alarm("w1", "warning", "active", 1), alarm("c1", "critical", "acknowledged", 2), alarm("c2", "critical", "active", 3),
                  alarm("x", "critical", "cleared", 4)):  # fmt: skip
            store.put_alarm(a)
    assert [(a["alarm_id"], a["status"]) for a in data.open_alarm_list()] == [("c2", "active"), ("c1", "acknowledged"), ("w1", "active")]
    assert data.open_alarms() == 3
