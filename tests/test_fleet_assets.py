"""`readings` and `fault_labels` materialized for real: Dagster instance, Parquet in a tmp dir."""

from __future__ import annotations

import datetime as dt
import hashlib

import dagster as dg
import duckdb
import pyarrow as pa

from iot_platform.core import simulator as sim
from iot_platform.io.lake import Lake
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.checks import all_checks

DAYS = ["2024-01-03", "2024-01-04"]


def _materialize(instance, resources, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize([fleet_readings, *all_checks], instance=instance, resources=resources, **kwargs)


def test_two_partitions_materialize_and_their_checks_pass(instance, resources, lake: Lake, small_fleet):
    for key in DAYS:
        result = _materialize(instance, resources, partition_key=key)
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert {e.check_name for e in evaluations} == {"schema", "unique_key", "no_null_keys", "ts_in_partition", "plausible"}
        assert all(e.passed for e in evaluations)

    for key in DAYS:
        mat = instance.get_latest_materialization_event(dg.AssetKey("readings")).asset_materialization
        assert mat is not None
    rows = duckdb.sql(
        f"SELECT date, count(*), count(DISTINCT sensor_id), min(ts), max(ts) "
        f"FROM {lake.scan_sql('readings')} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [str(r[0]) for r in rows] == DAYS
    for day, n, sensors, lo, hi in rows:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        assert sensors == 3
        assert start <= lo and hi < start + dt.timedelta(days=1)
        assert 0.9 * 3 * small_fleet.samples_per_day <= n <= 3 * small_fleet.samples_per_day


def test_materialization_metadata_shows_what_a_user_wants(instance, resources):
    result = _materialize(instance, resources, partition_key=DAYS[0])
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["readings"].materialization.metadata
    assert meta["dagster/row_count"].value > 0
    assert meta["sensors"].value == 3
    assert meta["time_range"].value.startswith("2024-01-03T00:00")
    assert 0.0 < meta["missing_rate"].value < 0.2
    assert "| sensor_id | ts |" in meta["preview"].value
    assert mats["fault_labels"].materialization.metadata["dagster/row_count"].value >= 0


def test_rematerializing_a_partition_reproduces_the_same_bytes(instance, resources, lake: Lake):
    digest = lambda: {  # noqa: E731
        t: hashlib.sha256(lake.files(t, DAYS[0])[0].read_bytes()).hexdigest() for t in ("readings", "fault_labels")
    }
    assert _materialize(instance, resources, partition_key=DAYS[0]).success
    first = digest()
    assert _materialize(instance, resources, partition_key=DAYS[0]).success
    assert digest() == first


def test_a_backfill_range_runs_as_one_run(instance, resources, lake: Lake):
    result = _materialize(
        instance,
        resources,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[1]},
    )
    assert result.success
    assert lake.days("readings") == [dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
    meta = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("readings")]
    assert sorted(m.partition for m in meta) == DAYS
    by_day = {m.partition: m.materialization.metadata["dagster/row_count"].value for m in meta}
    assert by_day == {d: lake.read("readings", [d]).num_rows for d in DAYS}  # each day its own figure


def test_the_lake_holds_the_simulator_output_validated(resources, instance, lake: Lake, small_fleet):
    assert _materialize(instance, resources, partition_key=DAYS[0]).success
    # the file holds each chunk's last hour after the chunk (io.day_layout): compare in key order
    got = lake.read("readings", [DAYS[0]]).sort_by([("sensor_id", "ascending"), ("ts", "ascending")])
    day = dt.date.fromisoformat(DAYS[0])
    from iot_platform.core.validation import validate_readings

    want = validate_readings(sim.simulate_day(small_fleet, day).readings).good
    assert got.equals(want)
    labels = lake.read("fault_labels", [DAYS[0]])
    assert labels.equals(sim.simulate_day(small_fleet, day).labels.sort_by([("sensor_id", "ascending"), ("start_ts", "ascending")]))
    assert isinstance(got, pa.Table)
