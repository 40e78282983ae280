"""A whole-day build computes chunks of sensors on two threads: same bytes as one thread."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest

from iot_platform.core.simulator import FleetParams
from iot_platform.io.downstream import DownstreamSettings, compute_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake

DAY = dt.date(2024, 1, 3)


def test_two_workers_give_the_same_day_as_one(lake: Lake):
    fleet = FleetParams(seed=11, n_sensors=5, sample_interval_s=10.0)
    for day in (DAY - dt.timedelta(days=1), DAY):
        build_readings_day(lake, fleet, day)
    one = DownstreamSettings(fleet=fleet, sensors_per_chunk=1, workers=1)
    runs = [compute_day(lake, DAY, dataclasses.replace(one, workers=n)) for n in (1, 2, 3)]
    for run in runs[1:]:
        assert run.window_stats.equals(runs[0].window_stats)
        assert run.points.equals(runs[0].points)  # in the same order, not only the same set
        assert run.anomalies.equals(runs[0].anomalies)
    assert (runs[0].window_stats.num_rows, runs[0].points.num_rows, runs[0].anomalies.num_rows) == (7037, 338, 44)


def test_workers_must_be_a_positive_integer():
    from iot_platform.core.detectors.pipeline import run_day_chunked

    with pytest.raises(ValueError, match="workers=0 is invalid; expected an integer >= 1"):
        run_day_chunked([], None, day=DAY, workers=0)


def test_worker_processes_give_the_same_days_as_one_process(lake: Lake, tmp_path):
    """Days built side by side in worker processes, and a day's chunks computed in them: the same bytes."""
    from iot_platform.io.day_builds import build_days
    from iot_platform.io.downstream import build_day
    from iot_platform.io.ingest import build_readings_days

    fleet = FleetParams(seed=11, n_sensors=7, sample_interval_s=10.0)
    days = [DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY]
    other = Lake(tmp_path / "other")
    one = list(build_readings_days(lake, fleet, days, now_us=lambda: 10**18, processes=1))
    two = list(build_readings_days(other, fleet, days, now_us=lambda: 10**18, processes=2))
    assert [s.day for s in two] == days and [s.rows for s in two] == [s.rows for s in one]
    for table in ("readings", "rejected_readings", "fault_labels"):
        for day in days:
            (a,), (b,) = lake.files(table, day), other.files(table, day)
            assert a.read_bytes() == b.read_bytes(), (table, day)
    settings = DownstreamSettings(fleet=fleet, sensors_per_chunk=2, workers=1)
    for day in days:  # day after day in this process: the reference
        build_day(lake, day, settings)
    reference = {(t, d): read_bytes(lake, t, d) for t in DERIVED for d in days}
    for n in (2, 3):  # in worker processes, day d+1 started while day d is written, its history from memory
        fresh = Lake(tmp_path / f"p{n}")
        list(build_readings_days(fresh, fleet, days, now_us=lambda: 10**18, processes=1))
        got = [day for day, _ in build_days(fresh, days, settings, now_us=lambda: 10**18, processes=n)]
        assert got == days
        assert {(t, d): read_bytes(fresh, t, d) for t in DERIVED for d in days} == reference
    out = build_day(lake, DAY, dataclasses.replace(settings, sensors_per_chunk=7))  # one chunk: the same windows
    assert (out.window_stats.num_rows, out.points.num_rows, out.anomalies.num_rows) == (9917, 1841, 58)
    assert read_bytes(lake, "window_stats", DAY) == reference["window_stats", DAY]


DERIVED = ("window_stats", "anomaly_points", "anomalies")


def read_bytes(lake: Lake, table: str, day: dt.date) -> bytes:
    (f,) = lake.files(table, day)
    return f.read_bytes()


@pytest.mark.parametrize("raw, expected", [("1", 1), ("3", 3)])
def test_worker_processes_setting(monkeypatch, raw, expected):
    from iot_platform.io.day_pool import worker_processes

    monkeypatch.setenv("IOT_WORKER_PROCESSES", raw)
    assert worker_processes() == expected


@pytest.mark.parametrize("raw", ["0", "two", "-1"])
def test_a_bad_worker_processes_setting_is_one_line(monkeypatch, raw):
    from iot_platform.io.day_pool import worker_processes

    monkeypatch.setenv("IOT_WORKER_PROCESSES", raw)
    with pytest.raises(ValueError, match=f"^IOT_WORKER_PROCESSES='{raw}' is invalid; expected a whole number >= 1$"):
        worker_processes()


def test_the_registry_survives_a_trip_to_a_worker_process(tmp_path):
    """A worker receives the detection parameters pickled: the simulator's sensors must stay the simulator's
    (an identity test on a module constant did not survive it, and drift alerted 12x more in the workers)."""
    import pickle

    from iot_platform.io.registry import fleet_registry

    registry = fleet_registry(tmp_path, FleetParams(seed=1, n_sensors=3))
    names = np.array(["sensor_001", "sensor_002", "other"], dtype=object)
    before, after = registry.resolve(names), pickle.loads(pickle.dumps(registry)).resolve(names)
    assert before.simulated.tolist() == after.simulated.tolist() == [True, True, False]


def test_worker_processes_die_with_a_killed_step(tmp_path):
    """A step SIGKILLed mid-range: its worker processes are killed too, none writes on into the lake."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = f"""
import datetime as dt
from pathlib import Path
from iot_platform.core.simulator import FleetParams
from iot_platform.io import day_pool
from iot_platform.io.ingest import build_readings_days
from iot_platform.io.lake import Lake

if __name__ == "__main__":
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(20)]
    built = build_readings_days(Lake(Path({str(tmp_path)!r})), FleetParams(n_sensors=50), days, now_us=lambda: 10**18, processes=2)
    next(built)
    print(" ".join(str(p.pid) for p in day_pool.pool(2)._processes.values()), flush=True)
    for _ in built:
        pass
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    def running(pid: int) -> bool:
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60  # a guard, not a speed check
    while any(running(p) for p in workers):
        assert time.monotonic() < deadline, [p for p in workers if running(p)]
        time.sleep(0.1)


def test_the_pool_outlives_the_thread_that_started_it():
    """Workers watch their process, not the thread that started them (PR_SET_PDEATHSIG would have killed
    them when that thread ended: a step run on a short-lived thread broke the pool for the next one)."""
    import os
    import threading
    import time

    from iot_platform.io import day_pool

    day_pool.shutdown()
    first: list[int] = []
    t = threading.Thread(target=lambda: first.extend(day_pool.map_in_workers(os.getpid, [(), ()], 2)))
    t.start()
    t.join()
    time.sleep(1.5)  # three of the workers' parent checks
    again = list(day_pool.map_in_workers(os.getpid, [(), ()], 2))
    assert set(again) <= set(day_pool.pool(2)._processes) and set(first) <= set(day_pool.pool(2)._processes)
    day_pool.shutdown()


def test_audits_of_days_in_worker_processes_equal_one_process(lake: Lake):
    from iot_platform.io.audits import audit_readings_days
    from iot_platform.io.ingest import build_readings_days

    days = [DAY - dt.timedelta(days=1), DAY]
    list(build_readings_days(lake, FleetParams(seed=11, n_sensors=4, sample_interval_s=10.0), days, now_us=lambda: 10**18))
    one, two = list(audit_readings_days(lake, days, 1)), list(audit_readings_days(lake, days, 2))
    assert [d for d, _ in two] == days and two == one
    assert {name: r.n_bad for name, r in one[0][1].items()} == dict.fromkeys(("schema", "unique_key", "no_null_keys", "ts_in_partition", "plausible"), 0)
