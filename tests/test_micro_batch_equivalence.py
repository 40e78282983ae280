"""A day built from micro-batches equals the same day backfilled in one run.

The sensor is driven with an injected clock on a real Dagster instance; each
run it requests is executed for real. Then the same day is backfilled into
another data root, and the tables are compared row for row.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core import simulator as sim
from iot_platform.io.lake import Lake
from iot_platform.orchestration.assets.detection import window_stats_and_anomalies
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.micro_batch import micro_batch_job, micro_batch_sensor
from iot_platform.orchestration.resources import ClockResource, DetectionResource, FleetResource, LakeResource

DAY = dt.date(2024, 1, 3)
PREV = DAY - dt.timedelta(days=1)
D0 = sim.day_start_us(DAY)
H = 3_600_000_000
S = 1_000_000
ASSETS = [fleet_readings, window_stats_and_anomalies]
KEYS = {
    "readings": [("sensor_id", "ascending"), ("ts", "ascending")],
    "window_stats": [("sensor_id", "ascending"), ("window_end", "ascending")],
    "anomalies": [("anomaly_id", "ascending")],
}


def _resources(root: Path) -> dict:
    return {
        "lake": LakeResource(data_dir=str(root)),
        "fleet": FleetResource(seed=7, n_sensors=3, sample_interval_s=10.0),
        "detection": DetectionResource(),
        "clock": ClockResource(),
    }


def _backfill(instance, root: Path, day: dt.date) -> None:
    assert dg.materialize(ASSETS, instance=instance, resources=_resources(root), partition_key=day.isoformat()).success


def _run_ticks(instance, root: Path, clock_us: list[int]) -> list[dg.ExecuteInProcessResult]:
    cursor, results = None, []
    for now in clock_us:
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={**_resources(root), "clock": ClockResource(fixed_now_us=now)}
        )
        data = micro_batch_sensor.evaluate_tick(ctx)
        cursor = data.cursor
        for req in data.run_requests:
            res = micro_batch_job.execute_in_process(run_config=req.run_config, instance=instance, resources=_resources(root))
            assert res.success
            results.append(res)
    return results


def _table(root: Path, table: str, day: dt.date) -> pa.Table:
    return Lake(root).read(table, [day]).sort_by(KEYS[table])


def test_micro_batches_rebuild_the_backfilled_day(instance, tmp_path: Path):
    live, batch = tmp_path / "live", tmp_path / "backfill"
    for root in (live, batch):
        _backfill(instance, root, PREV)  # the history the drift baseline learns from
    _backfill(instance, batch, DAY)

    # a compressed clock: a catch-up batch, 30-second batches, hours-long gaps, one across midnight
    clock = [D0 + 45 * S, D0 + 75 * S, D0 + 105 * S, D0 + 6 * H + 10 * S, D0 + 6 * H + 40 * S, D0 + 13 * H,
             D0 + 23 * H + 59 * 60 * S, D0 + 24 * H + 31 * S, D0 + 24 * H + 61 * S]  # fmt: skip
    results = _run_ticks(instance, live, clock)
    assert len(results) == len(clock)
    assert len(Lake(live).files("readings", DAY)) == 8  # one part per batch that touched the day

    for table in KEYS:
        got, want = _table(live, table, DAY), _table(batch, table, DAY)
        assert got.num_rows > 0, table
        assert got.equals(want), table

    # the batch across midnight reported both days
    touched = {m.partition for m in results[-2].get_asset_materialization_events()}
    assert touched == {"2024-01-03", "2024-01-04"}


def test_late_readings_refresh_their_day(instance, tmp_path: Path):
    """Readings landing for a day whose windows were already emitted rebuild that day downstream."""
    from iot_platform.core.schemas import LANDING, conform
    from iot_platform.io.lake import write_parquet_atomic

    root = tmp_path / "live"
    _backfill(instance, root, PREV)
    _backfill(instance, root, DAY)
    before = _table(root, "window_stats", DAY)
    late_ts = D0 + 10 * H + 5 * S  # between two simulated samples of sensor_001
    late = pa.table(
        {
            "sensor_id": ["sensor_001"],
            "ts": pa.array([late_ts], pa.timestamp("us", tz="UTC")),
            "temperature": [40.0],
            "source": ["import:late.csv"],
        }
    )
    write_parquet_atomic(conform(late, LANDING), root / "landing" / "import-late" / "late.parquet")
    (res,) = _run_ticks(instance, root, [D0 + 2 * 24 * H + 45 * S])  # two days later
    mat = [m for m in res.get_asset_materialization_events() if m.asset_key == dg.AssetKey("readings")][0]
    assert mat.partition == "2024-01-03"
    assert mat.materialization.metadata["late_days_refreshed"].value == "2024-01-03"
    after = _table(root, "window_stats", DAY)
    changed = after.filter(pc.not_equal(after["temp_max"], before["temp_max"]))
    # the windows holding it (400 s long for a 10 s sensor: at least 40 samples), every 60 s
    assert changed["sensor_id"].to_pylist() == ["sensor_001"] * 7
    assert set(changed["temp_max"].to_pylist()) == {40.0}
    spikes = _table(root, "anomalies", DAY).filter(pc.equal(pc.field("start_ts"), pa.scalar(late_ts, pa.timestamp("us", tz="UTC"))))
    assert spikes["anomaly_type"].to_pylist() == ["spike"]


def test_late_readings_in_a_days_last_minutes_refresh_the_next_day_too(instance, tmp_path: Path):
    """The next day's first windows and detectors read the previous day's last minutes: both days are refreshed,
    and both equal the days backfilled from scratch with the late readings already in."""
    from iot_platform.core.schemas import LANDING, conform
    from iot_platform.io.lake import write_parquet_atomic

    nxt = DAY + dt.timedelta(days=1)
    late_ts = [D0 + 24 * H - (300 - 10 * i) * S + 5 * S for i in range(30)]  # 23:55:05 .. 23:59:55, between samples
    late = conform(pa.table({
        "sensor_id": ["sensor_001"] * 30, "ts": pa.array(late_ts, pa.timestamp("us", tz="UTC")),
        "temperature": [40.0 + i % 3 for i in range(30)], "source": ["import:late.csv"] * 30,
    }), LANDING)  # fmt: skip
    live, scratch = tmp_path / "live", tmp_path / "scratch"
    for day in (PREV, DAY, nxt):
        _backfill(instance, live, day)
    before = _table(live, "window_stats", nxt)
    write_parquet_atomic(late, live / "landing" / "import-late" / "late.parquet")
    (res,) = _run_ticks(instance, live, [D0 + 3 * 24 * H + 45 * S])  # days later
    mat = [m for m in res.get_asset_materialization_events() if m.asset_key == dg.AssetKey("readings")][0]
    assert mat.materialization.metadata["late_days_refreshed"].value == "2024-01-03, 2024-01-04"
    assert not _table(live, "window_stats", nxt).equals(before)  # the late readings reach into the next day's windows
    # from scratch: the late file lands first, then the three days are backfilled
    write_parquet_atomic(late, scratch / "landing" / "import-late" / "late.parquet")
    for day in (PREV, DAY, nxt):
        _backfill(instance, scratch, day)
    for day in (DAY, nxt):
        for table in ("readings", "window_stats", "anomalies"):
            assert _table(live, table, day).equals(_table(scratch, table, day)), (day, table)


def test_a_batch_killed_after_its_downstream_parts_is_redone_exactly(instance, tmp_path: Path):
    """Crash after every part of a batch is on disk but before its commit; the next batch redoes it."""
    from iot_platform.io.downstream import make_update_downstream
    from iot_platform.io.microbatch import run_micro_batch

    live, batch = tmp_path / "live", tmp_path / "backfill"
    for root in (live, batch):
        _backfill(instance, root, PREV)
    _backfill(instance, batch, DAY)
    res = _resources(live)
    settings = res["detection"].settings(res["fleet"].params())
    lake = Lake(live)
    update = make_update_downstream(settings)

    def crash_after_parts(*args):
        update(*args)
        raise RuntimeError("killed before commit")

    def batch_(until: int, downstream) -> None:
        run_micro_batch(lake, f"mb-{until}", until, fleet=res["fleet"].params(), landing=live / "landing",
                        first_day=PREV, downstream=downstream)  # fmt: skip

    batch_(D0 + 2 * H, update)
    try:
        batch_(D0 + 5 * H, crash_after_parts)
    except RuntimeError:
        pass
    assert any(f.name == f"part-mb-{D0 + 5 * H}.parquet" for f in lake.files("window_stats", DAY))
    batch_(D0 + 24 * H + 90 * S, update)
    for table in KEYS:
        assert _table(live, table, DAY).equals(_table(batch, table, DAY)), table


def test_merged_parts_keep_the_day_equal_and_the_file_count_bounded(instance, tmp_path: Path, monkeypatch):
    from iot_platform.io import downstream
    from iot_platform.io.microbatch import run_micro_batch

    monkeypatch.setattr(downstream, "MERGE_PARTS_AT", 3)
    live, batch = tmp_path / "live", tmp_path / "backfill"
    for root in (live, batch):
        _backfill(instance, root, PREV)
    _backfill(instance, batch, DAY)
    res = _resources(live)
    update = downstream.make_update_downstream(res["detection"].settings(res["fleet"].params()))
    lake = Lake(live)
    for until in [D0 + 30 * S] + [D0 + h * H for h in range(1, 24)] + [D0 + 24 * H + 90 * S]:
        run_micro_batch(lake, f"mb-{until}", until, fleet=res["fleet"].params(), landing=live / "landing",
                        first_day=PREV, downstream=update)  # fmt: skip
        assert len(lake.files("anomaly_points", DAY)) <= 4
    for table in KEYS:
        assert _table(live, table, DAY).equals(_table(batch, table, DAY)), table
    assert len(lake.files("readings", DAY)) == 25
