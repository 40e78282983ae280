"""Micro-batch ingestion of readings: exactly once, by event day, whatever fails."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import LANDING, conform
from iot_platform.core.validation import validate_readings
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake, write_parquet_atomic
from iot_platform.io.commit import load_state
from iot_platform.io.microbatch import pending_landing_files, run_micro_batch

DAY = dt.date(2024, 1, 3)
D0 = sim.day_start_us(DAY)
H = 3_600_000_000
S = 1_000_000
FIRST = dt.date(2024, 1, 1)
KEY = [("sensor_id", "ascending"), ("ts", "ascending")]


def _batch(lake: Lake, until: int, fleet, batch_id: str | None = None, **kw):
    return run_micro_batch(
        lake, batch_id or f"mb-{until}", until, fleet=fleet, landing=lake.root / "landing", first_day=FIRST, **kw
    )


def _day(lake: Lake, day: dt.date = DAY) -> pa.Table:
    return lake.read("readings", [day]).sort_by(KEY)


def _expected(fleet, day: dt.date = DAY) -> pa.Table:
    return validate_readings(sim.simulate_day(fleet, day).readings).good


def test_a_day_of_micro_batches_equals_the_day_backfilled(lake: Lake, small_fleet):
    for until in [D0 + 30 * S, D0 + 5 * H, D0 + 5 * H + 30 * S, D0 + 23 * H, D0 + 24 * H + 30 * S]:
        _batch(lake, until, small_fleet)
    assert _day(lake).equals(_expected(small_fleet))
    assert len(lake.files("readings", DAY)) == 5


def test_a_batch_across_midnight_touches_both_days(lake: Lake, small_fleet):
    _batch(lake, D0 + 24 * H - 60 * S, small_fleet)
    r = _batch(lake, D0 + 24 * H + 30 * S, small_fleet)
    assert r.partitions == ["2024-01-03", "2024-01-04"]
    nxt = _day(lake, DAY + dt.timedelta(days=1))
    assert nxt.num_rows > 0
    assert pc.max(nxt["ts"]).as_py() < dt.datetime(2024, 1, 4, 0, 0, 30, tzinfo=dt.UTC)
    assert _day(lake).equals(_expected(small_fleet))


def test_a_repeated_batch_ingests_nothing_twice(lake: Lake, small_fleet):
    _batch(lake, D0 + 2 * H, small_fleet)
    again = _batch(lake, D0 + 2 * H, small_fleet)
    assert again.ingested == 0
    assert _day(lake).num_rows == _expected(small_fleet).filter(pc.less(pc.field("ts"), pa.scalar(D0 + 2 * H, pa.int64()).cast(pa.timestamp("us", tz="UTC")))).num_rows


def test_a_batch_that_fails_before_its_commit_is_redone_by_the_next(lake: Lake, small_fleet):
    _batch(lake, D0 + 1 * H, small_fleet)

    def crash(*args):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _batch(lake, D0 + 2 * H, small_fleet, downstream=crash)
    assert len(lake.files("readings", DAY)) == 2  # the dead batch's part is on disk, uncommitted
    r = _batch(lake, D0 + 3 * H, small_fleet)  # the next tick, another batch id
    assert r.removed_orphans == [f"part-mb-{D0 + 2 * H}.parquet"]
    want = _expected(small_fleet).filter(pc.less(pc.field("ts"), pa.scalar(D0 + 3 * H, pa.int64()).cast(pa.timestamp("us", tz="UTC"))))
    assert _day(lake).equals(want)


def test_a_batch_killed_with_sigkill_loses_and_duplicates_nothing(lake: Lake, small_fleet, tmp_path: Path):
    _batch(lake, D0 + 1 * H, small_fleet)
    script = textwrap.dedent(
        f"""
        import datetime as dt, time
        from pathlib import Path
        from iot_platform.core.simulator import FleetParams
        from iot_platform.io.lake import Lake
        from iot_platform.io.microbatch import run_micro_batch
        def hang(*a):
            print("parts written", flush=True)
            time.sleep(60)
        lake = Lake({str(lake.root)!r})
        run_micro_batch(lake, "mb-x", {D0 + 2 * H}, fleet=FleetParams(seed=7, n_sensors=3, sample_interval_s=10.0),
                        landing=lake.root / "landing", first_day=dt.date(2024, 1, 1), downstream=hang)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "parts written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _batch(lake, D0 + 2 * H, small_fleet, batch_id="mb-x")  # Dagster's retry: same batch id
    _batch(lake, D0 + 4 * H, small_fleet)
    want = _expected(small_fleet).filter(pc.less(pc.field("ts"), pa.scalar(D0 + 4 * H, pa.int64()).cast(pa.timestamp("us", tz="UTC"))))
    assert _day(lake).equals(want)


def _landing_file(lake: Lake, name: str, rows: list[tuple[str, int, float]], stream: str = "import-test") -> Path:
    sensor, ts, temp = zip(*rows)
    t = pa.table(
        {
            "sensor_id": pa.array(sensor, pa.string()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "temperature": pa.array(temp, pa.float64()),
            "source": pa.array([f"import:{name}"] * len(rows), pa.string()),
        }
    )
    path = lake.root / "landing" / stream / name
    write_parquet_atomic(conform(t, LANDING), path)
    return path


def test_landing_files_are_ingested_once_by_event_day_and_kept_in_the_raw_layer(lake: Lake):
    late = D0 - 2 * sim.DAY_US + 5 * S  # two days before: a late reading goes to its own day
    _landing_file(lake, "a.parquet", [("plant", D0 + 10 * S, 20.0), ("plant", D0 + 20 * S, 21.0), ("plant", late, 19.0)])
    _landing_file(lake, "b.parquet", [("plant", D0 + 20 * S, 21.0), ("plant", D0 + 30 * S, float("nan"))])  # re-sent + bad
    r = _batch(lake, D0 + 60 * S, None)
    assert (r.ingested, r.rejected, r.duplicates, r.landing_files) == (3, 1, 1, 2)
    assert sorted(r.partitions) == ["2024-01-01", "2024-01-03"]
    assert _day(lake)["temperature"].to_pylist() == [20.0, 21.0]
    assert _day(lake, dt.date(2024, 1, 1))["temperature"].to_pylist() == [19.0]
    rejected = lake.read("rejected_readings", [DAY])
    assert rejected["reason"].to_pylist() == ["temperature is not a finite number"]
    assert pending_landing_files(lake.root / "landing") == []
    assert sorted(p.name for p in (lake.root / "landing" / "_ingested" / "import-test").iterdir()) == ["a.parquet", "b.parquet"]
    assert _batch(lake, D0 + 90 * S, None).ingested == 0
    # a rebuild of the day from its sources keeps what the micro-batches ingested
    build_readings_day(lake, None, DAY)
    assert _day(lake).select(["sensor_id", "ts", "temperature"]).to_pylist() == [
        {"sensor_id": "plant", "ts": dt.datetime(2024, 1, 3, 0, 0, s, tzinfo=dt.UTC), "temperature": t} for s, t in ((10, 20.0), (20, 21.0))
    ]


def test_a_landing_file_committed_but_not_moved_is_not_read_again(lake: Lake):
    _landing_file(lake, "a.parquet", [("plant", D0 + 10 * S, 20.0)])
    _batch(lake, D0 + 30 * S, None)
    # simulate a crash between the commit and the move: put the file back
    ingested = lake.root / "landing" / "_ingested" / "import-test" / "a.parquet"
    state = load_state(lake)
    state.landing_ingested.append("import-test/a.parquet")
    from iot_platform.io.commit import commit_state

    commit_state(lake, state)
    os.replace(ingested, lake.root / "landing" / "import-test" / "a.parquet")
    r = _batch(lake, D0 + 60 * S, None)
    assert (r.ingested, r.landing_files) == (0, 0)
    assert _day(lake).num_rows == 1
    assert pending_landing_files(lake.root / "landing") == []


def test_a_file_imported_again_later_adds_nothing(lake: Lake):
    rows = [("plant", D0 + 10 * S, 20.0), ("plant", D0 + 20 * S, 21.0)]
    _landing_file(lake, "a.parquet", rows)
    assert _batch(lake, D0 + 30 * S, None).ingested == 2
    _landing_file(lake, "a-again.parquet", [*rows, ("plant", D0 + 25 * S, 22.0)])
    r = _batch(lake, D0 + 60 * S, None)
    assert (r.ingested, r.duplicates) == (1, 2)
    assert _day(lake)["temperature"].to_pylist() == [20.0, 21.0, 22.0]


def test_readings_without_a_partition_are_rejected_with_the_reason(lake: Lake):
    early = sim.day_start_us(dt.date(2023, 12, 31)) + 5 * S
    future = D0 + 3 * sim.DAY_US
    _landing_file(lake, "odd.parquet", [("plant", early, 1.0), ("plant", D0 + 5 * S, 2.0), ("plant", future, 3.0)])
    r = _batch(lake, D0 + 60 * S, None)
    assert (r.ingested, r.rejected) == (1, 2)
    rejected = lake.read("rejected_readings", [DAY]).sort_by("temperature")
    assert rejected["reason"].to_pylist() == [
        "no partition: ts on 2023-12-31, before the first partition 2024-01-01 (IOT_START_DATE)",
        "no partition: ts on 2024-01-06, in the future: more than an hour after the batch end",
    ]
    assert lake.days("readings") == [DAY]
    # a rebuild of the day (a backfill, the nightly finalize) keeps them: its sources do not hold them
    build_readings_day(lake, None, DAY)
    again = lake.read("rejected_readings", [DAY]).sort_by("temperature")
    assert again["reason"].to_pylist() == rejected["reason"].to_pylist()
    build_readings_day(lake, None, DAY)
    assert lake.read("rejected_readings", [DAY]).num_rows == 2


def test_a_backfill_of_today_racing_a_batch_duplicates_nothing(lake: Lake, small_fleet, monkeypatch):
    """The backfill swaps today's partition in after the batch simulated, before it writes."""
    from iot_platform.io import microbatch

    _batch(lake, D0 + 1 * H, small_fleet)
    real = microbatch.validate_readings

    def backfill_then_validate(*args, **kwargs):
        build_readings_day(lake, small_fleet, DAY, now_us=D0 + 3 * H)  # takes the partition lock itself
        return real(*args, **kwargs)

    monkeypatch.setattr(microbatch, "validate_readings", backfill_then_validate)
    r = _batch(lake, D0 + 2 * H, small_fleet)
    assert r.ingested == 0
    monkeypatch.setattr(microbatch, "validate_readings", real)
    _batch(lake, D0 + 4 * H, small_fleet)
    want = _expected(small_fleet).filter(pc.less(pc.field("ts"), pa.scalar(D0 + 4 * H, pa.int64()).cast(pa.timestamp("us", tz="UTC"))))
    assert _day(lake).equals(want)
