"""`iot-platform sql` and the SQL models over the lake on a real S3-compatible server (SeaweedFS).

The same anomalies as test_sql_cli.py's template, written to Delta tables under
``IOT_LAKE_URL``; the answers must be the local lake's, and the sandbox must hold.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from test_sql_cli import D1, D2, QUERY, QUERY_TABLE, anomaly, run

from iot_platform.core.schemas import ANOMALIES
from iot_platform.core.sqlmodels import load_project
from iot_platform.io.objstore import lake_store_from_env
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import QuerySession, default_project_dir, refresh

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


def test_a_bad_lake_url_is_one_line(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("IOT_LAKE_URL", "gs://bucket/lake")
    assert run(capsys, "SELECT 1") == (2, "", "Error: IOT_LAKE_URL='gs://bucket/lake' is not supported; expected s3://bucket/prefix or a local path\n")
