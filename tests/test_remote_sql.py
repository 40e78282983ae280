"""`iot-platform sql` and the SQL models over the lake on a real S3-compatible server (SeaweedFS).

The same anomalies as test_sql_cli.py's template, written to Delta tables under
``IOT_LAKE_URL``; the answers must be the local lake's, and the sandbox must hold.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_sql_cli import D1, D2, QUERY, QUERY_TABLE, anomaly, run

from iot_platform.core.schemas import ANOMALIES
from iot_platform.core.sqlmodels import load_project
from iot_platform.io.objstore import lake_store_from_env
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import QuerySession, default_project_dir, refresh, run_tests
from iot_platform.orchestration.models import build_model_assets, build_model_checks
from iot_platform.orchestration.resources import LakeResource

pytestmark = pytest.mark.objectstore


@pytest.fixture
def remote(s3_lake_url, data_dir, monkeypatch) -> Lake:
    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url)
    lake = Lake(data_dir, lake_store_from_env())
    lake.replace_partition("anomalies", D1, pa.Table.from_pylist([
        anomaly("a1", "s1", "critical", 1, 5.0, 'says "hi", twice'),
        anomaly("a2", "s2", "critical", 2, 3.0),
        anomaly("a3", "s2", "warning", 3, 4.5),
        anomaly("a4", "s2", "critical", 4, 2.0),
    ], schema=ANOMALIES))  # fmt: skip
    lake.replace_partition("anomalies", D2, pa.Table.from_pylist([anomaly("a5", "s1", "critical", 5, 9.0)], schema=ANOMALIES))
    return lake


def test_sql_reads_the_remote_lake(remote, capsys):
    assert run(capsys, QUERY) == (0, QUERY_TABLE, "")  # the local lake's answer, byte for byte


def test_models_over_the_remote_lake(remote, data_dir, capsys):
    code, out, err = run(capsys, "SELECT date, severity, n_anomalies FROM anomaly_summary_daily ORDER BY 1, 2", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {"date": "2024-03-01", "severity": "critical", "n_anomalies": 3},
        {"date": "2024-03-01", "severity": "warning", "n_anomalies": 1},
        {"date": "2024-03-02", "severity": "critical", "n_anomalies": 1},
    ]
    # a warehouse refresh builds the table models from the remote lake too
    built = {b.name: b for b in refresh(load_project(default_project_dir()), data_dir, ["anomaly_summary_daily"], remote=remote)}
    assert built["anomaly_summary_daily"].row_count == 3
    with QuerySession(load_project(default_project_dir()), data_dir, remote=remote) as session:
        assert "anomaly_summary_daily" in session.snapshot_models
        assert session.query("SELECT getvariable('latest_date')::VARCHAR AS d").to_pylist() == [{"d": "2024-03-02"}]


def test_the_store_is_not_readable_or_writable_from_sql(remote, s3_server, capsys):
    key = f"s3://{s3_server.bucket}/elsewhere/secret.parquet"
    code, _, err = run(capsys, f"SELECT * FROM read_parquet('{key}')")
    assert code == 2
    assert err.startswith(f'Error: Permission Error: Cannot access file "{key}" - file system operations are disabled')
    code, _, err = run(capsys, f"COPY (SELECT 1) TO '{key}'")
    assert (code, err) == (2, "Error: COPY is refused: the session writes nothing; use --output FILE to save a result\n")
    code, _, err = run(capsys, "SELECT * FROM __lake_anomalies")  # the registered datasets read, never write
    assert code == 0


def test_outside_the_lake_nothing_is_readable_on_the_store(remote, s3_server, capsys):
    """Only the registered snapshots are readable: not another bucket, not a listing, not even a
    lake file by its own URL (DuckDB opens no s3:// URL at all), and the sandbox cannot be undone."""
    lake_file = str(remote.files("anomalies", D1)[0])
    for path in (lake_file, "s3://another-bucket/lake/anomalies/x.parquet", f"s3://{s3_server.bucket}/**/*.parquet"):
        code, _, err = run(capsys, f"SELECT count(*) FROM read_parquet('{path}')")
        assert (code, err) == (2, f'Error: Permission Error: Cannot access file "{path}" - file system operations are disabled '
                                  f"by configuration (line 1, column 22); queries may read files under {remote.root.resolve()} only\n")  # fmt: skip
    code, _, err = run(capsys, f"SELECT * FROM glob('s3://{s3_server.bucket}/*')")
    assert code == 2 and err.startswith("Error: Permission Error: ")
    code, out, err = run(capsys, "SELECT current_setting('enable_external_access') AS ext, current_setting('lock_configuration') AS locked",
                         "--format", "csv")  # fmt: skip
    assert (code, out, err) == (0, "ext,locked\nfalse,true\n", "")
    code, _, err = run(capsys, "SELECT * FROM (SET enable_external_access = true)")
    assert code == 2


def test_views_read_the_snapshot_files_only(remote, s3_server, s3_lake_url, capsys):
    """A file the table's snapshot does not name (a part no commit added, a superseded file kept
    through the grace period) is never read, though it lies under the table's prefix."""
    stray = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([anomaly("stray", "s9", "critical", 6, 99.0)], schema=ANOMALIES), stray)
    prefix = s3_lake_url.split("/", 3)[3]
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{prefix}/anomalies/date={D1}/part-stray.parquet", Body=stray.getvalue())
    superseded = remote.files("anomalies", D2)
    remote.replace_partition("anomalies", D2, pa.Table.from_pylist([anomaly("a6", "s3", "warning", 7, 1.5)], schema=ANOMALIES))
    assert all(f.exists() for f in superseded)  # still on the store (grace period)
    code, out, err = run(capsys, "SELECT date, anomaly_id, sensor_id FROM anomalies ORDER BY anomaly_id", "--format", "csv")
    assert (code, err) == (0, "")
    assert out == "date,anomaly_id,sensor_id\n" + "".join(
        f"{d},{a},{s}\n" for d, a, s in [(D1, "a1", "s1"), (D1, "a2", "s2"), (D1, "a3", "s2"), (D1, "a4", "s2"), (D2, "a6", "s3")]
    )
    code, out, _ = run(capsys, "SELECT count(*) AS n FROM anomalies WHERE date = DATE '2024-03-02'", "--format", "csv")
    assert (code, out) == (0, "n\n1\n")  # the date partition is the file's directory, pruned by the filter


def test_models_and_data_tests_find_the_store_lake_themselves(remote, data_dir):
    """The Dagster model asset and data tests call refresh/run_tests with the data root only: with
    IOT_LAKE_URL set they read the store's snapshots (before, DuckDB was handed s3:// URLs and failed)."""
    project = load_project(default_project_dir())
    built = {b.name: b for b in refresh(project, data_dir)}
    assert built["anomaly_summary_daily"].row_count == 3
    outcomes = run_tests(project, data_dir)
    assert [(o.test.name, o.error) for o in outcomes if o.error is not None] == []
    with QuerySession(project, data_dir) as session:
        assert session.remote is not None
        assert session.query("SELECT count(*) AS n FROM anomalies").to_pylist() == [{"n": 5}]


def test_an_open_session_takes_each_new_snapshot(remote, data_dir):
    """Like a local session: a commit after the session opened is in its next query, on a locked connection."""
    with QuerySession(load_project(default_project_dir()), data_dir) as session:
        count = "SELECT count(*) AS n, max(anomaly_id) AS last FROM anomalies"
        assert session.query(count).to_pylist() == [{"n": 5, "last": "a5"}]
        remote.replace_partition("anomalies", D2, pa.Table.from_pylist([anomaly("a6", "s3", "warning", 7, 1.5),
                                                                         anomaly("a7", "s3", "warning", 8, 1.0)], schema=ANOMALIES))  # fmt: skip
        assert session.query(count).to_pylist() == [{"n": 6, "last": "a7"}]
        assert session.query("SELECT n_anomalies FROM anomaly_summary_daily WHERE date = DATE '2024-03-02'").to_pylist() == [
            {"n_anomalies": 2}
        ]  # a view model over the lake follows too


def test_the_dagster_model_assets_and_checks_on_the_store(s3_lake_url, data_dir, instance, monkeypatch):
    import test_model_assets

    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url)
    monkeypatch.setattr(test_model_assets, "Lake", lambda root: Lake(root, lake_store_from_env()))  # the same data, on the store
    test_model_assets.write_lake(data_dir)
    result = dg.materialize([*build_model_assets(), *build_model_checks()], instance=instance,
                            resources={"lake": LakeResource(data_dir=str(data_dir))})  # fmt: skip
    assert result.success
    mats = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    assert sorted(mats) == sorted(test_model_assets.MODELS)
    assert mats["sensor_health_daily"]["dagster/row_count"].value == 1
    assert mats["open_alerts"]["dagster/row_count"].value == 1
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 32
    assert [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed] == []


def test_a_bad_lake_url_is_one_line(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("IOT_LAKE_URL", "gs://bucket/lake")
    assert run(capsys, "SELECT 1") == (2, "", "Error: IOT_LAKE_URL='gs://bucket/lake' is not supported; expected s3://bucket/prefix or a local path\n")


def test_the_alarm_history_on_the_store_is_listed_and_queried(remote, capsys):
    """alarm_log / alarm_deliveries are plain files under date=D/ (not Delta tables): listed on the store too."""
    from iot_platform.core.alarm_schemas import ALARM_LOG
    from iot_platform.io.parquet_files import write_parquet_atomic

    row = {f.name: None for f in ALARM_LOG}
    row |= {"alarm_id": "al1", "sensor_id": "s1", "alarm_type": "spike", "severity": "critical", "status": "active"}
    row |= dict.fromkeys(("first_seen", "last_seen", "created_at", "updated_at"), dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    for day in (D1, D2):
        write_parquet_atomic(pa.Table.from_pylist([row], schema=ALARM_LOG), remote.table_dir("alarm_log") / f"date={day}" / "data.parquet")
    assert [len(remote.files("alarm_log", d)) for d in (D1, D2)] == [1, 1]
    assert run(capsys, "--format", "csv", "SELECT count(*) AS n FROM alarm_log") == (0, "n\n2\n", "")
