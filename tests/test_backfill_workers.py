"""`iot-platform backfill --workers N`: the days spread over Dagster's multiprocess executor, same lake.

The lake built by 2 workers must be the lake built by 1, file for file and byte
for byte; the detection step must start only after every readings chunk is in.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from conftest_serial import cli_command

from iot_platform.cli import main
from iot_platform.orchestration.backfill import day_chunks

START, END = "2024-01-01", "2024-01-04"  # detection of the 4th reads windows of days from both chunks


def _backfill(root: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, IOT_DATA_DIR=str(root / "data"), DAGSTER_HOME=str(root / "home"), IOT_FLEET_SIZE="3",
               IOT_SAMPLE_INTERVAL_S="10", **(extra_env or {}))  # fmt: skip
    return subprocess.run([*cli_command(), "backfill", START, END, *args], env=env, capture_output=True, text=True, timeout=900)


def _lake_files(root: Path) -> dict[str, bytes]:
    """Each table's partitions in its current snapshot: ``table/date=D/i`` -> the bytes of its data files
    (their names are fresh ids, so the bytes are ordered, not the names)."""
    from iot_platform.io.lake import TABLES, Lake

    lake, out = Lake(root / "data"), {}
    for table in TABLES:
        for day in lake.days(table):
            for i, data in enumerate(sorted(f.read_bytes() for f in lake.files(table, day))):
                out[f"{table}/date={day}/{i}"] = data
    return out


def _step_events(home: Path, run_id: str) -> list[tuple[str, str, int]]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [
            (r.dagster_event.event_type_value, r.dagster_event.step_key, r.dagster_event.pid)
            for r in instance.all_logs(run_id)  # in the order they were stored
            if r.dagster_event is not None and r.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
        ]


def assert_spread_like_one_worker(one: Path, two: Path, proc: subprocess.CompletedProcess) -> None:
    files = _lake_files(two)
    assert files == _lake_files(one)
    assert sorted({k.split("/")[0] for k in files}) == ["anomalies", "anomaly_points", "fault_labels", "readings", "rejected_readings", "window_stats"]
    assert len([k for k in files if k.startswith("readings/")]) == 4

    run_id = proc.stdout.splitlines()[-1].rsplit(" ", 1)[1]
    events = _step_events(two / "home", run_id)
    chunks = ["readings_days[2024_01_01__2024_01_02]", "readings_days[2024_01_03__2024_01_04]"]
    assert sorted(step for kind, step, _ in events if kind == "STEP_SUCCESS") == sorted(["plan_backfill", "detection_days", *chunks])
    # each chunk in a process of its own, none in the CLI's
    pids = {step: pid for kind, step, pid in events if kind == "STEP_START"}
    assert len({pids[c] for c in chunks} | {os.getpid(), pids["detection_days"]}) == 4
    # detection began only after both readings chunks succeeded (the store's order)
    order = [(kind, step) for kind, step, _ in events]
    assert order.index(("STEP_START", "detection_days")) > max(order.index(("STEP_SUCCESS", c)) for c in chunks)


def _one_and_many(tmp_path, workers: int) -> tuple[Path, Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The same range backfilled by 1 worker and by ``workers``, each in its own data root."""
    one, many = tmp_path / "one", tmp_path / f"w{workers}"
    p1 = _backfill(one)
    assert p1.returncode == 0, p1.stderr
    pn = _backfill(many, "--workers", str(workers))
    assert pn.returncode == 0, pn.stderr
    assert "Warning" not in pn.stderr, pn.stderr
    return one, many, p1, pn


def test_two_workers_build_the_same_lake_as_one(tmp_path):
    one, two, p1, p2 = _one_and_many(tmp_path, 2)
    assert p2.stdout.splitlines()[0] == (
        "backfill 2024-01-01..2024-01-04 (4 days) of anomalies, fault_labels, readings, window_stats on 2 workers"
    )
    # the same progress lines and the same summary (but the run id and the time)
    assert sorted(p2.stdout.splitlines()[2:-1]) == sorted(p1.stdout.splitlines()[2:-1])
    s1, s2 = p1.stdout.splitlines()[-1], p2.stdout.splitlines()[-1]
    assert s2.split("; ")[0] == s1.split("; ")[0]
    assert_spread_like_one_worker(one, two, p2)
    # the UI sees every partition of every lake asset materialized, by that one run
    run_id = s2.rsplit(" ", 1)[1]
    with dg.DagsterInstance.from_config(str(two / "home")) as instance:
        (run,) = instance.get_runs()
        assert (run.run_id, run.job_name, run.status) == (run_id, "backfill_days", dg.DagsterRunStatus.SUCCESS)
        assert run.tags["iot/backfill_range"] == "2024-01-01..2024-01-04"
        for asset in ("readings", "fault_labels", "window_stats", "anomalies"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=10).records
            assert sorted(r.partition_key for r in records) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
            assert {r.run_id for r in records} == {run_id}


@pytest.mark.parametrize(
    "days, chunks, expected",
    [
        (7, 2, [4, 3]),
        (7, 3, [3, 2, 2]),
        (2, 5, [1, 1]),  # never an empty chunk
        (1, 1, [1]),
        (10, 4, [3, 3, 2, 2]),
    ],
)
def test_days_are_cut_into_consecutive_chunks(days, chunks, expected):
    start = dt.date(2024, 1, 1)
    out = day_chunks(start, start + dt.timedelta(days=days - 1), chunks)
    assert [len(c) for c in out] == expected
    assert [d for c in out for d in c] == [start + dt.timedelta(days=i) for i in range(days)]


def test_chunks_must_be_positive():
    with pytest.raises(ValueError, match="chunks=0 is invalid; expected an integer >= 1"):
        day_chunks(dt.date(2024, 1, 1), dt.date(2024, 1, 2), 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "argument --workers: workers '0' is not valid; expected a whole number >= 1"),
        (["--workers", "2", "--select", "readings"], "Error: --workers 2 builds the whole lake (--select 'group:lake'); --select 'readings' runs with --workers 1"),
    ],
)
def test_bad_workers_are_named(args, message, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    try:
        code = main(["backfill", START, END, *args])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_failing_step_is_reported_with_its_own_error_and_exit_1(tmp_path):
    (tmp_path / "data").mkdir()
    bad = tmp_path / "data" / "sensors.yaml"
    bad.write_text("sensors:\n  - id: [\n")
    proc = _backfill(tmp_path, "--workers", "2")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    # the step's own exception, not Dagster's wrapper of it (the step ran in another process)
    assert lines[-2] == f"failed: plan_backfill: ValueError: {bad}: not valid YAML (while parsing a flow node)"
    assert lines[-1].startswith("backfill FAILED: 4 partitions (2024-01-01..2024-01-04), 4 assets, rows: -; ")
    assert not (tmp_path / "data" / "lake" / "readings").exists()


def test_from_three_workers_detection_runs_in_two_waves_and_builds_the_same_lake(tmp_path):
    one, four, _, p4 = _one_and_many(tmp_path, 4)
    assert _lake_files(four) == _lake_files(one)
    run_id = p4.stdout.splitlines()[-1].rsplit(" ", 1)[1]
    events = _step_events(four / "home", run_id)
    days = ["2024_01_01__2024_01_01", "2024_01_02__2024_01_02", "2024_01_03__2024_01_03", "2024_01_04__2024_01_04"]
    waves = [f"window_days[{d}]" for d in days], [f"anomaly_days[{d}]" for d in days]
    done = {step for kind, step, _ in events if kind == "STEP_SUCCESS"}
    assert done == {"plan_backfill", "plan_waves", "plan_days", "detection_after_waves",
                    *[f"readings_days[{d}]" for d in days], *waves[0], *waves[1]}  # fmt: skip
    order = [(kind, step) for kind, step, _ in events]
    # every day's anomalies began after every day's windows were in: the history they read is complete
    assert min(order.index(("STEP_START", s)) for s in waves[1]) > max(order.index(("STEP_SUCCESS", s)) for s in waves[0])
    with dg.DagsterInstance.from_config(str(four / "home")) as instance:
        (run,) = instance.get_runs()
        assert (run.job_name, run.status) == ("backfill_days_in_waves", dg.DagsterRunStatus.SUCCESS)


def test_the_waves_leave_yesterday_and_today_to_the_ordered_step():
    from iot_platform.orchestration.backfill import past_days

    keys = ["2024-03-08", "2024-03-09", "2024-03-10", "2024-03-11"]
    assert past_days(keys, dt.date(2024, 3, 11)) == ["2024-03-08", "2024-03-09"]
    assert past_days(keys, dt.date(2024, 3, 9)) == []
