"""The readings audits from the rows as the chain writes them (io.pass_audits): the read-back's figures, or none."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from iot_platform.core.calendar import US, day_start_us
from iot_platform.core.schemas import FAULT_LABELS, READINGS, conform
from iot_platform.core.simulator import FleetParams
from iot_platform.io.audits import READINGS_AUDITS, AuditResult, audit_readings
from iot_platform.io.chain import build_chain_days
from iot_platform.io.downstream import DownstreamSettings
from iot_platform.io.lake import Lake
from iot_platform.io.pass_audits import PassAudit
from iot_platform.orchestration import chain_handoff
from iot_platform.orchestration.assets.detection import window_stats_and_anomalies
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.checks import anomalies_checks, readings_checks, window_stats_checks

DAY = dt.date(2024, 3, 5)
T0 = day_start_us(DAY)
PASSED = {name: AuditResult(name, 0, []) for name in READINGS_AUDITS}


def _rows(sensor: str, offsets_s: list[int], temperature: list[float | None] | None = None) -> pa.Table:
    n = len(offsets_s)
    temp = temperature if temperature is not None else [20.0 + i % 3 for i in range(n)]
    return conform(pa.table({
        "sensor_id": pa.array([sensor] * n),
        "ts": pa.array([T0 + s * US for s in offsets_s]).cast(READINGS.field("ts").type),
        "temperature": pa.array(temp, pa.float64()),
        "humidity": pa.array([40.0] * n),
    }), READINGS)  # fmt: skip


def _label(sensor: str, fault: str, start_s: int, end_s: int) -> pa.Table:
    return pa.table({
        "label_id": [f"{sensor}-{fault}"], "sensor_id": [sensor], "fault_type": [fault], "metric": ["temperature"],
        "start_ts": pa.array([T0 + start_s * US]).cast(FAULT_LABELS.field("start_ts").type),
        "end_ts": pa.array([T0 + end_s * US]).cast(FAULT_LABELS.field("end_ts").type),
        "magnitude": [999.0], "n_readings": pa.array([1], pa.int64()),
    }, schema=FAULT_LABELS)  # fmt: skip


CLEAN = [_rows("s1", [0, 10, 20]), _rows("s2", [0, 10, 20])]
# chunks, labels, whether the pass vouches for the day (else the read-back decides)
CASES = {
    "clean": (CLEAN, None, True),
    "an impossible value inside a labelled sensor fault": (
        [_rows("s1", [0, 10, 20], [20.0, 150.0, 20.0]), CLEAN[1]], _label("s1", "sensor_fault", 5, 15), True),
    "an impossible value no label explains": (
        [_rows("s1", [0, 10, 20], [20.0, 150.0, 20.0]), CLEAN[1]], _label("s1", "spike", 5, 15), False),
    "an impossible value of another sensor's fault": (
        [_rows("s1", [0, 10, 20], [20.0, 150.0, 20.0]), CLEAN[1]], _label("s2", "sensor_fault", 5, 15), False),
    "an impossible value past its fault's end": (
        [_rows("s1", [0, 10, 20], [20.0, 150.0, 20.0]), CLEAN[1]], _label("s1", "sensor_fault", 5, 10), False),
    # DuckDB orders NaN above every value, but its row groups' statistics leave NaN out: the read-back decides
    "NaN": ([_rows("s1", [0, 10, 20], [20.0, float("nan"), 20.0]), CLEAN[1]], None, False),
    "a null value is no impossible value": ([_rows("s1", [0, 10, 20], [20.0, None, 20.0]), CLEAN[1]], None, True),
    "a repeated key": ([_rows("s1", [0, 10, 10]), CLEAN[1]], None, False),
    "a key in two chunks": ([_rows("s1", [0, 10]), _rows("s1", [10, 20])], None, False),
    # unique keys, but the pass's order test no longer proves it: the read-back decides
    "a sensor in two chunks": ([_rows("s1", [0, 10]), _rows("s1", [20, 30])], None, False),
    "a reading of the next day": ([_rows("s1", [0, 10, 86_400]), CLEAN[1]], None, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_clean_day_passes_as_the_read_back_does_and_any_other_is_left_to_it(tmp_path: Path, case: str):
    chunks, labels, clean = CASES[case]
    lake = Lake(tmp_path)
    lake.replace_partition("readings", DAY, iter(chunks))
    if labels is not None:
        lake.replace_partition("fault_labels", DAY, labels)
    audit = PassAudit(DAY, READINGS)
    for chunk in chunks:
        audit.add(chunk)
    got = audit.results(labels if labels is not None else FAULT_LABELS.empty_table())
    read_back = audit_readings(lake, DAY)
    if clean:
        assert got == read_back == PASSED
    else:
        assert got is None
        if case not in ("NaN", "a sensor in two chunks"):
            assert not all(r.passed for r in read_back.values())  # the read-back has the counts and examples


def test_a_schema_without_a_metric_is_left_to_the_read_back():
    audit = PassAudit(DAY, READINGS.remove(READINGS.get_field_index("pressure")))
    audit.add(CLEAN[0])
    assert audit.results(FAULT_LABELS.empty_table()) is None


FLEET = FleetParams(seed=5, n_sensors=5, sample_interval_s=10.0)
DAYS = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]


def test_the_handed_audits_hold_only_while_the_files_are_unchanged(tmp_path: Path):
    lake = Lake(tmp_path)
    built = list(build_chain_days(lake, FLEET, DAYS, DownstreamSettings(fleet=FLEET, sensors_per_chunk=2), now_us=lambda: None))
    assert [c.audited.results for c in built] == [PASSED, PASSED]
    assert [audit_readings(lake, d) for d in DAYS] == [PASSED, PASSED]
    checked = {"readings": {c.stats.day: c.audited for c in built}}
    chain_handoff.save(lake, "run-1", {}, checked)
    assert chain_handoff.take_checks(lake, "run-2", "readings", DAYS) == {}  # another run's: nothing
    assert chain_handoff.take_checks(lake, "run-1", "readings", DAYS) == dict.fromkeys(DAYS, PASSED)
    assert chain_handoff.take_checks(lake, "run-1", "readings", DAYS) == {}  # taken once
    # a late reading in the first day, new labels on the second: both read back
    chain_handoff.save(lake, "run-1", {}, checked)
    late = lake.read("readings", [DAYS[0]]).slice(0, 1)
    late = late.set_column(1, "ts", pa.array([day_start_us(DAYS[0]) + 5 * US]).cast(late.schema.field("ts").type))
    lake.write_part("readings", DAYS[0], "late", late)
    lake.replace_partition("fault_labels", DAYS[1], lake.read("fault_labels", [DAYS[1]]).slice(1))
    assert chain_handoff.take_checks(lake, "run-1", "readings", DAYS) == {}


class _SharedLake(Lake):
    """A lake another writer, sharing no lock (another machine), commits to right after this one commits
    ``after`` (the rows of the partition's first ten readings again: keys repeated)."""

    def __init__(self, root: Path, after: str, into: str):
        super().__init__(root)
        self.after, self.into = after, into

    def replace_partition(self, table, day, data, **kwargs) -> Path:  # noqa: ANN001
        path = super().replace_partition(table, day, data, **kwargs)
        if table == self.after:
            self.append_part(self.into, day, 1, self.read(self.into, [day]).slice(0, 10), app_id="another-machine")
        return path


@pytest.mark.parametrize(("after", "into"), [("rejected_readings", "readings"), ("anomaly_points", "readings"),
                                             ("anomalies", "window_stats")])  # fmt: skip
def test_what_another_writer_commits_during_the_pass_is_read_back(tmp_path: Path, after: str, into: str):
    lake = _SharedLake(tmp_path, after, into)
    (c,) = build_chain_days(lake, FLEET, DAYS[:1], DownstreamSettings(fleet=FLEET, sensors_per_chunk=2), now_us=lambda: None)
    # the pass vouches for nothing it did not write alone, nor hands the derived tables on
    readings_raced = after == "rejected_readings"
    assert (c.audited.results is None) == readings_raced
    assert c.inputs is None
    assert (c.written["window_stats"] is None) == (into == "window_stats")
    assert c.written["anomalies"] is not None
    chain_handoff.save(lake, "run-1", {}, {"readings": {DAYS[0]: c.audited}})
    handed = chain_handoff.take_checks(lake, "run-1", "readings", DAYS[:1])
    assert handed == ({} if readings_raced or into == "readings" else {DAYS[0]: PASSED})
    if into == "readings":  # the read-back sees the repeated keys
        assert audit_readings(lake, DAYS[0])["unique_key"].n_bad == 10


def test_a_backfill_run_reports_the_audits_of_its_pass_as_a_check_run_reads_them_back(instance, data_dir: Path, range_run):
    resources, tags = range_run

    def checks(result: dg.ExecuteInJobResult) -> dict:
        evaluations = result.get_asset_check_evaluations()
        return {(e.asset_key.to_user_string(), e.check_name): (e.passed, {k: v.value for k, v in e.metadata.items()})
                for e in evaluations}  # fmt: skip

    all_checks = [readings_checks, window_stats_checks, anomalies_checks]
    chained = dg.materialize([fleet_readings, window_stats_and_anomalies, *all_checks], instance=instance, resources=resources, tags=tags)
    assert chained.success
    logs = [e.user_message for e in instance.all_logs(chained.run_id)]
    assert "3 of 3 days audited by this run's readings step, from the rows it wrote" in logs
    assert "3 of 3 days checked in this run's readings step, over the rows it wrote" in logs
    read_back = dg.materialize(all_checks, instance=instance, resources=resources, tags=tags,
                               selection=dg.AssetSelection.all_asset_checks())  # fmt: skip
    assert read_back.success
    assert not any("this run's readings step" in (e.user_message or "") for e in instance.all_logs(read_back.run_id))
    assert checks(chained) == checks(read_back)
    assert len(checks(chained)) == len(READINGS_AUDITS) + 3 + 4
    assert all(passed and meta["partitions_checked"] == 3 for passed, meta in checks(chained).values())
    np.testing.assert_equal(len(list((data_dir / "lake" / "_state" / "chain_handoff").glob("*.pkl"))), 0)  # all taken
