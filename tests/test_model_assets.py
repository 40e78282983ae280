"""The SQL models as Dagster assets and their data tests as asset checks, on a real instance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from iot_platform.core.schemas import ANOMALIES, WINDOW_STATS
from iot_platform.core.sqlmodels import load_project
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import QuerySession, default_project_dir
from iot_platform.orchestration.models import build_model_assets, build_model_checks
from iot_platform.orchestration.resources import LakeResource

D1 = dt.date(2024, 3, 1)
UTC = dt.timezone.utc
MODELS = [
    "anomaly_summary_daily", "detection_quality_daily", "window_tiles", "sensor_hourly", "fleet_hourly",
    "sensor_health_daily", "open_alerts", "sensor_readings_hourly", "sensor_status", "alarms",
]


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, 1, hour, minute, tzinfo=UTC)


def write_lake(root: Path, anomaly_type: str = "spike", severity: str = "critical") -> None:
    lake = Lake(root)
    lake.replace_partition("window_stats", D1, pa.Table.from_pylist([
        dict(sensor_id="s1", window_start=at(h), window_end=at(h + 1), n_readings=10, temp_mean=20.0, temp_min=19.0,
             temp_max=21.0, humidity_mean=50.0, pressure_mean=1000.0, vibration_mean=0.2, vibration_max=0.4,
             battery_level=90.0 - h, missing_rate=0.0)
        for h in range(3)
    ], schema=WINDOW_STATS))
    lake.replace_partition("anomalies", D1, pa.Table.from_pylist([
        dict(anomaly_id="a1", sensor_id="s1", anomaly_type=anomaly_type, severity=severity, metric="temperature",
             start_ts=at(2, 30), end_ts=at(2, 31), value=40.0, threshold=30.0, score=3.0, n_points=2,
             systemic_id=None, message="too hot"),
    ], schema=ANOMALIES))


@pytest.fixture(scope="module")
def assets():
    return build_model_assets()


@pytest.fixture(scope="module")
def checks():
    return build_model_checks()


def test_lineage_comes_from_ref_and_source(assets, checks):
    (models,) = assets
    assert sorted(k.to_user_string() for k in models.keys) == sorted(MODELS)
    deps = {k.to_user_string(): sorted(d.to_user_string() for d in v) for k, v in models.asset_deps.items()}
    assert deps["window_tiles"] == ["window_stats"]
    assert deps["sensor_health_daily"] == ["anomalies", "window_stats", "window_tiles"]
    assert deps["open_alerts"] == ["anomalies", "sensor_health_daily"]
    assert deps["sensor_status"] == ["open_alerts", "sensor_health_daily"]
    assert deps["sensor_readings_hourly"] == ["readings"]
    assert deps["fleet_hourly"] == ["sensor_hourly"]
    assert deps["detection_quality_daily"] == ["anomalies", "fault_labels"]
    assert deps["alarms"] == ["alarm_deliveries", "alarm_log"]
    # the lake tables are upstream assets of the lead's code location; here they are external
    defs = dg.Definitions(assets=assets, asset_checks=checks, resources={"lake": LakeResource(data_dir="/nonexistent")})
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("sensor_health_daily")).parent_keys} == {
        "anomalies", "window_stats", "window_tiles"
    }
    (check_def,) = checks
    assert len(list(check_def.check_keys)) == len(load_project(default_project_dir()).tests) == 32  # 29 + 3 on alarms
    assert dg.AssetCheckKey(dg.AssetKey("open_alerts"), "relationships_anomaly_id__anomalies") in set(check_def.check_keys)
    spec = models.specs_by_key[dg.AssetKey("sensor_health_daily")]
    assert spec.group_name == "warehouse" and spec.kinds == {"duckdb", "sql"}
    assert spec.description.startswith("Per sensor and UTC day")
    assert spec.metadata["materialized"] == "table"


def test_materialize_all_models_then_checks_pass(tmp_path, instance, assets, checks):
    write_lake(tmp_path)
    result = dg.materialize([*assets, *checks], instance=instance, resources={"lake": LakeResource(data_dir=str(tmp_path))})
    assert result.success
    mats = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    assert sorted(mats) == sorted(MODELS)
    assert mats["sensor_health_daily"]["dagster/row_count"].value == 1
    assert "dagster/row_count" not in mats["fleet_hourly"]  # a view: counting would scan the lake
    assert mats["open_alerts"]["dagster/row_count"].value == 1  # a1: no quiet hour after it yet
    schema = mats["sensor_health_daily"]["dagster/column_schema"].value
    assert [(c.name, c.type) for c in schema.columns][:3] == [("sensor_id", "VARCHAR"), ("date", "DATE"), ("n_readings", "BIGINT")]
    assert schema.columns[0].description == "The sensor."
    assert "| s1 | 2024-03-01 | 30 |" in mats["sensor_health_daily"]["preview"].value
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 32
    assert [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed] == []
    assert instance.get_latest_materialization_event(dg.AssetKey("open_alerts")) is not None
    with QuerySession(load_project(default_project_dir()), tmp_path) as s:
        assert s.query("SELECT sensor_id, anomaly_id FROM open_alerts").to_pylist() == [{"sensor_id": "s1", "anomaly_id": "a1"}]


def test_checks_fail_on_bad_data_with_the_count_and_examples(tmp_path, instance, assets, checks):
    write_lake(tmp_path, anomaly_type="gremlins", severity="fatal")
    result = dg.materialize([*assets, *checks], instance=instance, resources={"lake": LakeResource(data_dir=str(tmp_path))})
    assert result.success  # checks report, they do not block
    failed = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations() if not e.passed}
    assert sorted(failed) == [
        ("anomaly_summary_daily", "accepted_values_anomaly_type"),
        ("anomaly_summary_daily", "accepted_values_severity"),
    ]
    e = failed[("anomaly_summary_daily", "accepted_values_severity")]
    assert e.severity == dg.AssetCheckSeverity.ERROR
    assert e.metadata["failing_rows"].value == 1
    assert "| 2024-03-01 | gremlins | fatal | 1 |" in e.metadata["examples"].value
    assert "list_contains(?, \"severity\")" in e.metadata["sql"].value


def test_a_subset_refresh_builds_only_the_selection(tmp_path, instance, assets, checks):
    write_lake(tmp_path)
    resources = {"lake": LakeResource(data_dir=str(tmp_path))}
    dg.materialize([*assets, *checks], instance=instance, resources=resources)
    write_lake(tmp_path, anomaly_type="drift")
    result = dg.materialize([*assets, *checks], instance=instance, resources=resources, selection=["anomaly_summary_daily"])
    assert [m.asset_key.to_user_string() for m in result.get_asset_materialization_events()] == ["anomaly_summary_daily"]
    assert {e.check_name for e in result.get_asset_check_evaluations()} == {
        "unique_date_anomaly_type_severity", "not_null_date", "not_null_anomaly_type",
        "accepted_values_anomaly_type", "not_null_severity", "accepted_values_severity",
    }
    with QuerySession(load_project(default_project_dir()), tmp_path) as s:
        assert s.query("SELECT anomaly_type FROM anomaly_summary_daily").to_pylist() == [{"anomaly_type": "drift"}]
        # sensor_health_daily was not selected: it keeps the previous build's anomaly types
        assert s.query("SELECT anomaly_types FROM sensor_health_daily").to_pylist() == [{"anomaly_types": ["spike"]}]


def test_on_the_platforms_own_lake_assets(tmp_path, instance, assets, checks):
    """readings -> window_stats -> anomalies as the platform builds them, then the models:
    counting over window tiles gives every sensor-day's and sensor-hour's exact reading count."""
    from iot_platform.definitions import defs
    from iot_platform.orchestration.resources import FleetResource

    resources = {**defs.resources, "lake": LakeResource(data_dir=str(tmp_path)),
                 "fleet": FleetResource(seed=7, n_sensors=2, sample_interval_s=1.0)}
    everything = list(defs.assets)  # the definitions already hold the model assets
    lake_run = dg.materialize(everything, instance=instance, resources=resources, partition_key="2024-01-02",
                              selection=["readings", "fault_labels", "window_stats", "anomalies"])
    assert lake_run.success
    result = dg.materialize([*everything, *defs.asset_checks], instance=instance, resources=resources,
                            selection=dg.AssetSelection.groups("warehouse"))
    assert result.success
    assert [(e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations() if not e.passed] == []
    with QuerySession(load_project(default_project_dir()), tmp_path) as s:
        daily = s.query(
            "SELECT h.sensor_id, h.n_readings = r.n AS exact, h.last_seen <= r.last_ts AND r.last_ts < h.last_seen + INTERVAL 5 MINUTE AS seen "
            "FROM sensor_health_daily AS h JOIN (SELECT sensor_id, date, count(*) AS n, max(ts) AS last_ts FROM readings GROUP BY ALL) AS r "
            "USING (sensor_id, date) ORDER BY 1"
        ).to_pylist()
        assert daily == [{"sensor_id": "sensor_001", "exact": True, "seen": True}, {"sensor_id": "sensor_002", "exact": True, "seen": True}]
        hourly = s.query(
            "SELECT count(*) AS hours, count(*) FILTER (WHERE h.n_readings = r.n_readings) AS exact "
            "FROM sensor_hourly AS h FULL JOIN sensor_readings_hourly AS r USING (sensor_id, hour) WHERE coalesce(h.date, r.date) = DATE '2024-01-02'"
        ).to_pylist()
        assert hourly == [{"hours": 48, "exact": 48}]
