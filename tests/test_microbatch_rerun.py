"""A committed micro-batch is immutable: re-executing it never replaces what it ingested.

Reproduces issue 10.1: run a batch, import a file, run the *same* batch again
(a re-execution from the UI, a run retry after a failure past the commit).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import LANDING, conform
from iot_platform.io.commit import load_state
from iot_platform.io.lake import Lake, write_parquet_atomic
from iot_platform.io.microbatch import run_micro_batch
from iot_platform.orchestration.micro_batch import micro_batch_job

DAY = dt.date(2024, 1, 3)
D0 = sim.day_start_us(DAY)
S = 1_000_000
FIRST = dt.date(2024, 1, 1)


def _import(lake: Lake, name: str, sensor: str, n: int, start_s: int) -> None:
    t = pa.table(
        {
            "sensor_id": pa.array([sensor] * n, pa.string()),
            "ts": pa.array([D0 + (start_s + i) * S for i in range(n)], pa.timestamp("us", tz="UTC")),
            "temperature": pa.array([20.0 + i / 100 for i in range(n)], pa.float64()),
            "source": pa.array([f"import:{name}"] * n, pa.string()),
        }
    )
    write_parquet_atomic(conform(t, LANDING), lake.root / "landing" / "import-test" / name)


def _batch(lake: Lake, batch_id: str, until: int, fleet):
    return run_micro_batch(lake, batch_id, until, fleet=fleet, landing=lake.root / "landing", first_day=FIRST)


def test_re_running_a_committed_batch_keeps_its_rows_and_adds_only_what_is_new(lake: Lake, small_fleet):
    first = _batch(lake, "mb-1", D0 + 3600 * S, small_fleet)
    before = lake.read("readings", [DAY]).num_rows
    assert (first.ingested, first.rerun_of) == (before, None)
    _import(lake, "late.parquet", "plant", 50, 100)
    again = _batch(lake, "mb-1", D0 + 3600 * S, small_fleet)
    assert (again.rerun_of, again.batch_id, again.ingested) == ("mb-1", "mb-1-r2", 50)
    assert lake.read("readings", [DAY]).num_rows == before + 50
    names = sorted(f.name for f in lake.files("readings", DAY))
    assert names == ["part-mb-1-r2.parquet", "part-mb-1.parquet"]
    # and a third run with nothing new is a no-op that says so
    third = _batch(lake, "mb-1", D0 + 3600 * S, small_fleet)
    assert (third.rerun_of, third.ingested) == ("mb-1", 0)
    assert lake.read("readings", [DAY]).num_rows == before + 50


def test_re_running_a_committed_import_batch_without_a_fleet_loses_nothing(lake: Lake):
    _import(lake, "a.parquet", "plant", 300, 0)
    assert _batch(lake, "mb-2", D0 + 600 * S, None).ingested == 300
    _import(lake, "b.parquet", "plant", 10, 1000)
    again = _batch(lake, "mb-2", D0 + 600 * S, None)
    assert again.ingested == 10
    assert lake.read("readings", [DAY]).num_rows == 310
    assert lake.read("raw_readings", [DAY]).num_rows == 310
    # the downstream tables of a re-run keep the first run's windows too
    state = load_state(lake)
    assert sorted(state.day_parts("readings", DAY)) == ["part-mb-2-r2.parquet", "part-mb-2.parquet"]


def test_re_executing_the_dagster_run_of_a_committed_batch_loses_nothing(instance, resources, lake: Lake):
    """The reproduction of the issue, with the real job on a real instance, twice with one config."""
    config = {"ops": {"micro_batch": {"config": {"batch_id": f"mb-{D0 + 1800 * S}-sim", "until_us": D0 + 1800 * S}}}}
    assert micro_batch_job.execute_in_process(run_config=config, instance=instance, resources=resources).success
    before = lake.read("readings", [DAY]).num_rows
    assert before > 0
    _import(lake, "some.parquet", "plant", 50, 200)
    rerun = micro_batch_job.execute_in_process(run_config=config, instance=instance, resources=resources)
    assert rerun.success
    out = [e for e in rerun.all_events if e.event_type_value == "STEP_OUTPUT"][0]
    md = out.event_specific_data.metadata
    assert md["rerun_of"].value == f"mb-{D0 + 1800 * S}-sim"
    assert md["readings_ingested"].value == 50
    assert lake.read("readings", [DAY]).num_rows == before + 50


def test_a_fleet_grown_mid_day_fills_the_new_sensors_from_midnight(lake: Lake):
    """IOT_FLEET_SIZE 3 -> 5 at 00:05: today equals the backfill of the day, and no false alert."""
    from iot_platform.core.validation import validate_readings
    from iot_platform.io.downstream import DownstreamSettings, make_update_downstream

    small, grown = (sim.FleetParams(seed=7, n_sensors=n, sample_interval_s=10.0) for n in (3, 5))
    update = make_update_downstream(DownstreamSettings(fleet=small), FIRST)
    run_micro_batch(lake, "a", D0 + 300 * S, fleet=small, landing=lake.root / "landing", first_day=FIRST, downstream=update)
    update = make_update_downstream(DownstreamSettings(fleet=grown), FIRST)
    r = run_micro_batch(lake, "b", D0 + 3600 * S, fleet=grown, landing=lake.root / "landing", first_day=FIRST, downstream=update)
    assert r.late_days == ["2024-01-03"]  # windows already emitted for the day are rebuilt with the new sensors
    want = validate_readings(sim.simulate(grown, D0, D0 + 3600 * S).readings).good
    got = lake.read("readings", [DAY]).sort_by([("sensor_id", "ascending"), ("ts", "ascending")])
    assert got.equals(want)
    # the next batch does not fill again
    r = run_micro_batch(lake, "c", D0 + 3630 * S, fleet=grown, landing=lake.root / "landing", first_day=FIRST, downstream=update)
    assert r.ingested == 5 * 3 and r.duplicates == 0
    # the same alerts as the day built from scratch with the grown fleet: none from the change itself
    ref = Lake(lake.root.parent / "ref")
    run_micro_batch(ref, "c", D0 + 3630 * S, fleet=grown, landing=ref.root / "landing", first_day=FIRST, downstream=update)
    key = ["sensor_id", "anomaly_type", "start_ts", "end_ts"]
    assert lake.read("anomalies", [DAY]).select(key).sort_by([(k, "ascending") for k in key]).equals(
        ref.read("anomalies", [DAY]).select(key).sort_by([(k, "ascending") for k in key])
    )
