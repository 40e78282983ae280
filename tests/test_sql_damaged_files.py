"""A damaged lake file fails only the queries that read it, with one line naming it."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iot_platform.cli import main
from iot_platform.core.schemas import ANOMALIES
from iot_platform.core.simulator import FleetParams
from iot_platform.core.sqlmodels import load_project
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import WarehouseError, default_project_dir, refresh, run_tests

D3, D4 = dt.date(2024, 1, 3), dt.date(2024, 1, 4)
HINT = "run 'iot-platform doctor' to list damaged files and 'iot-platform doctor --repair' to quarantine them and rebuild their days"


@pytest.fixture(scope="module")
def day_rows(tmp_path_factory) -> tuple[Path, int]:
    """A data root holding one real day of `readings` (D4), and its row count."""
    root = tmp_path_factory.mktemp("lake")
    stats = build_readings_day(Lake(root), FleetParams(seed=7, n_sensors=3, sample_interval_s=10.0), D4)
    return root, stats.rows


@pytest.fixture
def root(day_rows, data_dir: Path) -> Path:
    import shutil

    shutil.copytree(day_rows[0], data_dir, dirs_exist_ok=True)
    return data_dir


def sql(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_junk_bytes_fail_only_the_queries_that_read_them(root, day_rows, capsys):
    # the day's only file: before views read a schema file first, DuckDB took the
    # `readings` columns from it and every query failed, even SELECT 1
    junk = Lake(root).partition_dir("readings", D3) / "junk.parquet"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(random.Random(0).randbytes(5000))
    Lake(root).commit("readings", [(D3, junk)])  # a file of the table's snapshot, damaged
    assert sql(capsys, "SELECT 1 AS one") == (0, "one\n---\n  1\n(1 row)\n", "")
    assert sql(capsys, "SELECT count(*) AS n FROM readings WHERE date = DATE '2024-01-04'", "--format", "csv") == (
        0, f"n\n{day_rows[1]}\n", ""
    )
    assert sql(capsys, "SELECT count(*) AS n FROM anomalies") == (0, "n\n-\n0\n(1 row)\n", "")
    assert sql(capsys, "SELECT count(*) FROM readings") == (2, "", (
        "Error: lake/readings/date=2024-01-03/junk.parquet is not a valid Parquet file of table readings "
        f"(No magic bytes found at end of file); {HINT}\n"
    ))


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes"])
def test_a_damaged_part_names_itself(root, capsys, damage):
    good = Lake(root).compacted("readings", D4)
    part = good.with_name("part-0001.parquet")
    data = good.read_bytes()
    part.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    Lake(root).commit("readings", [(D4, part)])
    code, out, err = sql(capsys, "SELECT count(*) FROM readings WHERE date = DATE '2024-01-04'")
    reason = "No magic bytes found at end of file" if damage == "truncated" else "too small to be a Parquet file"
    assert (code, out) == (2, "")
    assert err.startswith("Error: lake/readings/date=2024-01-04/part-0001.parquet is not a valid Parquet file of table readings (")
    assert err.endswith(f"); {HINT}\n") and reason in err and err.count("\n") == 1


def test_a_file_with_another_schema_names_the_missing_column(root, capsys):
    odd = Lake(root).partition_dir("readings", D4) / "part-odd.parquet"
    pq.write_table(pa.table({"sensor_id": ["s1"], "temp": [1.0]}), odd)
    Lake(root).commit("readings", [(D4, odd)])
    assert sql(capsys, "SELECT * FROM readings WHERE date = DATE '2024-01-04'") == (2, "", (
        f"Error: lake/readings/date=2024-01-04/part-odd.parquet is not a valid Parquet file of table readings "
        f"(column 'ts' is missing); {HINT}\n"
    ))


def test_a_refresh_names_the_damaged_file(data_dir):
    lake = Lake(data_dir)
    lake.replace_partition("anomalies", D4, ANOMALIES.empty_table())
    (lake.partition_dir("anomalies", D3)).mkdir(parents=True)
    (lake.partition_dir("anomalies", D3) / "junk.parquet").write_bytes(b"PAR1 and then nothing useful")
    lake.commit("anomalies", [(D3, lake.partition_dir("anomalies", D3) / "junk.parquet")])
    with pytest.raises(WarehouseError) as info:
        refresh(load_project(default_project_dir()), data_dir)
    message = str(info.value)
    assert " failed to build: lake/anomalies/date=2024-01-03/junk.parquet is not a valid Parquet file of table anomalies (" in message
    assert message.endswith(HINT) and "\n" not in message


def test_data_tests_name_the_damaged_file(data_dir):
    lake = Lake(data_dir)
    lake.replace_partition("anomalies", D4, ANOMALIES.empty_table())
    project = load_project(default_project_dir())
    refresh(project, data_dir)
    live = lake.compacted("anomalies", D4)
    live.write_bytes(b"")  # a file of the snapshot the warehouse's views read, damaged
    errors = {o.error for o in run_tests(project, data_dir) if o.error and "anomalies/" in o.error}
    assert errors and all(e.startswith(f"lake/anomalies/date=2024-01-04/{live.name} is not a valid Parquet file of table anomalies (") for e in errors)
