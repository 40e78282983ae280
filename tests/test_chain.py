"""A backfill of the lake in one pass over each day (io.chain): the same bytes as readings, then detection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa

from iot_platform.core.calendar import DAY_US, US, day_start_us
from iot_platform.core.schemas import READINGS, conform
from iot_platform.core.simulator import FleetParams
from iot_platform.io.chain import build_chain_days
from iot_platform.io.downstream import DownstreamSettings, build_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake
from iot_platform.orchestration import chain_handoff
from iot_platform.orchestration.assets.detection import window_stats_and_anomalies
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.resources import LakeResource

DAYS = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
TABLES = ("readings", "rejected_readings", "fault_labels", "window_stats", "anomaly_points", "anomalies")
FLEET = FleetParams(seed=5, n_sensors=7, sample_interval_s=10.0)


def _imported(day: dt.date) -> pa.Table:
    """A 5-minute boiler nobody simulates, with a duplicate, a null temperature and an impossible value."""
    ts = day_start_us(day) + np.arange(288, dtype=np.int64) * 300 * US
    temp = 60 + np.sin(np.arange(288) / 20)
    temp[100], temp[200] = np.nan, 900.0
    t = pa.table({"sensor_id": pa.array(["boiler_1"] * 288), "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
                  "temperature": pa.array(temp, from_pandas=False), "source": pa.array(["import:boiler.csv"] * 288)})  # fmt: skip
    t = pa.concat_tables([conform(t, READINGS), conform(t.slice(10, 1), READINGS)])
    return t


def _bytes(lake: Lake) -> dict:
    out = {}
    for table in TABLES:
        for day in DAYS:
            (f,) = lake.files(table, day)
            out[table, day] = f.read_bytes()
    return out


def _lake(root: Path) -> Lake:
    lake = Lake(root)
    lake.write_part("raw_readings", DAYS[1], "import-boiler", _imported(DAYS[1]))
    return lake


def test_a_range_in_one_pass_is_the_same_bytes_as_readings_then_detection(tmp_path: Path):
    now = day_start_us(DAYS[2]) + DAY_US // 2  # the last day is today, half-way through
    settings = DownstreamSettings(fleet=FLEET, sensors_per_chunk=2, workers=2)  # several chunks a day
    reference = _lake(tmp_path / "reference")
    stats = []
    for day in DAYS:
        stats.append(build_readings_day(reference, FLEET, day, now_us=now))
        build_day(reference, day, settings, now_us=now)
    lake = _lake(tmp_path / "chain")
    got = list(build_chain_days(lake, FLEET, DAYS, settings, now_us=lambda: now))
    assert [c.stats.day for c in got] == DAYS
    assert _bytes(lake) == _bytes(reference)
    assert [c.out.window_stats.num_rows for c in got] == [lake.read("window_stats", [d]).num_rows for d in DAYS]
    assert [c.stats for c in got] == stats
    assert "boiler_1" in got[1].stats.sensor_ids
    assert lake.read("window_stats", [DAYS[1]]).filter(pa.compute.equal(pa.compute.field("sensor_id"), "boiler_1")).num_rows > 0
    # today: windows up to the watermark only
    assert lake.read("window_stats", [DAYS[2]])["window_end"].cast(pa.int64()).to_numpy().max() <= now


def test_the_handoff_holds_only_while_every_input_is_unchanged(tmp_path: Path):
    settings = DownstreamSettings(fleet=FLEET, sensors_per_chunk=3)
    lake = Lake(tmp_path / "data")
    built = list(build_chain_days(lake, FLEET, DAYS, settings, now_us=lambda: None))
    handed = {c.stats.day: chain_handoff.HandedDay({"n": 1}, {"n": 2}, f"{c.stats.day}", c.inputs) for c in built}
    chain_handoff.save(lake, "run-1", handed)
    assert chain_handoff.take(lake, "run-2", DAYS, settings) == {}  # another run's: nothing
    assert set(chain_handoff.take(lake, "run-1", DAYS, settings)) == set(DAYS)
    assert chain_handoff.take(lake, "run-1", DAYS, settings) == {}  # taken once
    # a late reading lands in the middle day between the two steps: that day and the next (its
    # previous-day context) are computed again; the first day still holds
    chain_handoff.save(lake, "run-1", handed)
    late = lake.read("readings", [DAYS[1]]).slice(0, 1)
    lake.write_part("readings", DAYS[1], "late", late.set_column(1, "ts", pa.array([day_start_us(DAYS[1]) + 5 * US]).cast(late.schema.field("ts").type)))
    assert set(chain_handoff.take(lake, "run-1", DAYS, settings)) == {DAYS[0]}
    # the derived files themselves rewritten (a micro-batch, another build): not current either
    chain_handoff.save(lake, "run-1", handed)
    build_day(lake, DAYS[0], settings)
    assert set(chain_handoff.take(lake, "run-1", DAYS, settings)) == set()


def test_a_backfill_run_computes_each_day_once_with_the_same_result(tmp_path: Path, instance, data_dir: Path, range_run):
    resources, tags = range_run
    result = dg.materialize([fleet_readings, window_stats_and_anomalies], instance=instance, resources=resources, tags=tags)
    assert result.success
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert "3 of 3 days computed by this run's readings step, in the same pass" in logs
    chained = _bytes(Lake(data_dir))
    # each day's figures on its own partition, from the readings step's pass
    for key in ("window_stats", "anomalies"):
        events = instance.fetch_materializations(dg.AssetKey(key), limit=10).records
        parts = {e.event_log_entry.asset_materialization.partition: e.event_log_entry.asset_materialization.metadata for e in events}
        assert sorted(parts) == [d.isoformat() for d in DAYS]
        assert all(m["dagster/row_count"].value > 0 for m in parts.values())
    # the same days in two runs (readings, then detection), in another data directory: the same files, byte for byte
    two = tmp_path / "two"
    two.mkdir()
    for assets in ([fleet_readings], [window_stats_and_anomalies]):
        run = dg.materialize(assets, instance=instance, resources={**resources, "lake": LakeResource(data_dir=str(two))}, tags=tags)
        assert run.success
    assert _bytes(Lake(two)) == chained


def test_days_with_a_gap_read_the_history_from_the_lake(tmp_path: Path):
    """The day before a gap is not the next day's newest history day: its windows are read back once written."""
    days = [DAYS[0], DAYS[2]]
    settings = DownstreamSettings(fleet=FLEET, sensors_per_chunk=3)
    reference = Lake(tmp_path / "reference")
    for day in days:
        build_readings_day(reference, FLEET, day)
        build_day(reference, day, settings)
    lake = Lake(tmp_path / "chain")
    assert [c.stats.day for c in build_chain_days(lake, FLEET, days, settings, now_us=lambda: None)] == days
    for table in TABLES:
        for day in days:
            (a,), (b,) = reference.files(table, day), lake.files(table, day)
            assert a.read_bytes() == b.read_bytes(), (table, day)
