"""`iot-platform doctor`: damaged lake and landing files listed exactly; --repair quarantines them
and rebuilds their days, which then query with the right row counts."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iot_platform.cli import main
from iot_platform.core import simulator as sim
from iot_platform.core.schemas import LANDING, conform
from iot_platform.core.simulator import FleetParams
from iot_platform.io.downstream import compute_day, write_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake, write_parquet_atomic
from iot_platform.io.microbatch import run_micro_batch
from iot_platform.orchestration.resources import DetectionResource

DAY = dt.date(2024, 1, 3)
FLEET = FleetParams(seed=7, n_sensors=3, sample_interval_s=10.0)
D = "date=2024-01-03"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A day of readings and its derived tables, built as the assets build them; their row counts."""
    root = tmp_path_factory.mktemp("doctor")
    lake = Lake(root)
    stats = build_readings_day(lake, FLEET, DAY)
    out = compute_day(lake, DAY, DetectionResource().settings(FLEET))
    write_day(lake, DAY, out)
    return root, {"readings": stats.rows, "window_stats": out.window_stats.num_rows, "anomalies": out.anomalies.num_rows}


@pytest.fixture
def root(template, data_dir: Path, monkeypatch) -> Path:
    shutil.copytree(template[0], data_dir, dirs_exist_ok=True)
    for name, value in (("IOT_FLEET_SIZE", "3"), ("IOT_FLEET_SEED", "7"), ("IOT_SAMPLE_INTERVAL_S", "10")):
        monkeypatch.setenv(name, value)
    return data_dir


def doctor(capsys, *argv: str) -> tuple[int, str]:
    code = main(["doctor", *argv])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def count(capsys, sql: str) -> int:
    assert main(["sql", "--format", "csv", sql]) == 0
    return int(capsys.readouterr().out.splitlines()[1])


def damage(root: Path) -> dict[str, bytes]:
    """Junk bytes, a truncated real part, a zero-byte part, a wrong schema and a junk landing file."""
    lake = root / "lake"
    good = Lake(root).compacted("readings", DAY).read_bytes()
    files = {
        f"lake/readings/{D}/junk.parquet": random.Random(0).randbytes(5000),
        f"lake/readings/{D}/part-0001.parquet": good[: len(good) // 2],
        f"lake/anomalies/{D}/part-0002.parquet": b"",
        "landing/import-x/20240103T000000.000000Z-1-0.parquet": b"PAR1" + random.Random(1).randbytes(100) + b"PAR1",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        _in_table(root, rel)
    ws = pq.read_table(Lake(root).compacted("window_stats", DAY))
    i = ws.schema.get_field_index("window_end")
    ws = ws.set_column(i, "window_end", ws["window_end"].cast(pa.int64()).cast(pa.float64()))  # epoch us as a float
    pq.write_table(ws, lake / "window_stats" / D / "part-0003.parquet")
    files[f"lake/window_stats/{D}/part-0003.parquet"] = (lake / "window_stats" / D / "part-0003.parquet").read_bytes()
    _in_table(root, f"lake/window_stats/{D}/part-0003.parquet")
    return files


def _in_table(root: Path, rel: str) -> None:
    """Make a lake file part of its table's snapshot (damage to a file the log references:
    a file beside the table's files that no commit added is in no query)."""
    if rel.startswith("lake/"):
        _, table, part, _ = rel.split("/")
        Lake(root).commit(table, [(part.removeprefix("date="), root / rel)])


LISTING = (
    "table         day         file                                                  problem\n"
    "------------  ----------  ----------------------------------------------------  {dashes}\n"
    "anomalies     2024-01-03  lake/anomalies/date=2024-01-03/part-0002.parquet      empty file (0 bytes)\n"
    "readings      2024-01-03  lake/readings/date=2024-01-03/junk.parquet            not a Parquet file (no PAR1 magic at its start; 5000 bytes)\n"
    "readings      2024-01-03  lake/readings/date=2024-01-03/part-0001.parquet       truncated (no Parquet footer at its end; {half} bytes)\n"
    "window_stats  2024-01-03  lake/window_stats/date=2024-01-03/part-0003.parquet   wrong schema (column 'window_end' is double, expected timestamp[us, tz=UTC])\n"
    "landing       -           landing/import-x/20240103T000000.000000Z-1-0.parquet  footer unreadable ({footer})\n"
    "(5 damaged)\n"
)


def test_a_clean_lake(root, capsys):
    assert doctor(capsys) == (0, "No damaged files: 6 lake files in 6 partitions and 0 landing files checked.\n")


def test_damaged_files_are_listed_with_table_day_and_reason(root, capsys):
    files = damage(root)
    code, out = doctor(capsys)
    footer = out.split("footer unreadable (")[1].split(")\n")[0]  # pyarrow's own words
    half = len(files[f"lake/readings/{D}/part-0001.parquet"])
    assert code == 1
    width = max(len(f"footer unreadable ({footer})"), len("wrong schema (column 'window_end' is double, expected timestamp[us, tz=UTC])"))
    assert out == LISTING.format(half=half, footer=footer, dashes="-" * width) + (
        "5 damaged (10 lake files in 6 partitions and 1 landing files checked); 'iot-platform doctor --repair' "
        "moves them to lake/_quarantine/ and rebuilds their days\n"
    )
    assert footer.startswith("Parquet file size is 108 bytes, smaller than the size reported by footer")


def test_repair_quarantines_and_rebuilds_each_day(root, template, capsys):
    rows = template[1]
    files = damage(root)
    code, out = doctor(capsys, "--repair")
    lines = out.splitlines()
    assert code == 0, out
    assert lines[8:] == [
        f"Quarantined lake/anomalies/{D}/part-0002.parquet -> lake/_quarantine/anomalies/{D}/part-0002.parquet",
        f"Quarantined lake/readings/{D}/junk.parquet -> lake/_quarantine/readings/{D}/junk.parquet",
        f"Quarantined lake/readings/{D}/part-0001.parquet -> lake/_quarantine/readings/{D}/part-0001.parquet",
        f"Quarantined lake/window_stats/{D}/part-0003.parquet -> lake/_quarantine/window_stats/{D}/part-0003.parquet",
        "Quarantined landing/import-x/20240103T000000.000000Z-1-0.parquet -> lake/_quarantine/landing/import-x/20240103T000000.000000Z-1-0.parquet",
        f"Rebuilt readings 2024-01-03 from its sources: {rows['readings']} rows, 0 rejected",
        f"Recomputed window_stats, anomaly_points, anomalies 2024-01-03: {rows['window_stats']} windows, {rows['anomalies']} anomalies",
        "Warning: landing/import-x/20240103T000000.000000Z-1-0.parquet was never ingested: its rows are in no table; "
        "what can be read of it is in lake/_quarantine/landing/import-x/20240103T000000.000000Z-1-0.parquet",
    ]
    # nothing deleted: every damaged file is in quarantine, byte for byte, with its reason
    for rel, data in files.items():
        moved = root / "lake" / "_quarantine" / rel.removeprefix("lake/")
        assert moved.read_bytes() == data
        assert f"file: {rel}\n" in moved.with_name(moved.name + ".reason.txt").read_text()
        assert not (root / rel).exists()
    assert doctor(capsys)[0] == 0
    assert count(capsys, "SELECT count(*) FROM readings WHERE date = DATE '2024-01-03'") == rows["readings"]
    assert count(capsys, "SELECT count(*) FROM window_stats") == rows["window_stats"]
    assert count(capsys, "SELECT count(*) FROM anomalies") == rows["anomalies"]


def _ingest_one_landing_file(root: Path) -> tuple[Path, int]:
    """A real micro-batch ingesting one imported file into DAY (no simulated fleet)."""
    start = sim.day_start_us(DAY)
    t = pa.table({
        "sensor_id": pa.array(["plant"] * 50, pa.string()),
        "ts": pa.array([start + i * 10_000_000 for i in range(50)], pa.timestamp("us", tz="UTC")),
        "temperature": pa.array([20.0 + i / 10 for i in range(50)], pa.float64()),
        "source": pa.array(["import:p.csv"] * 50, pa.string()),
    })  # fmt: skip
    write_parquet_atomic(conform(t, LANDING), root / "landing" / "import-p" / "20240103T000000.000000Z-1-0.parquet")
    lake = Lake(root)
    run_micro_batch(lake, "mb-1", start + 3_600_000_000, fleet=FLEET, landing=root / "landing", first_day=DAY)
    raw = lake.files("raw_readings", DAY)
    assert [p.name for p in raw] == ["part-import-p__20240103T000000.000000Z-1-0.parquet"]
    return raw[0], count_rows(lake)


def count_rows(lake: Lake) -> int:
    return lake.read("readings", [DAY]).num_rows


def test_a_damaged_raw_part_is_restored_from_its_landing_file(root, template, capsys):
    raw, before = _ingest_one_landing_file(root)
    assert before == template[1]["readings"] + 50
    raw.write_bytes(raw.read_bytes()[:100])
    code, out = doctor(capsys, "--repair")
    assert code == 0, out
    assert "Restored lake/raw_readings/date=2024-01-03/part-import-p__20240103T000000.000000Z-1-0.parquet from " \
           "landing/_ingested/import-p/20240103T000000.000000Z-1-0.parquet (50 rows)\n" in out  # fmt: skip
    assert count(capsys, "SELECT count(*) FROM readings WHERE date = DATE '2024-01-03'") == before
    assert count(capsys, "SELECT count(*) FROM raw_readings") == 50


def test_a_raw_part_without_its_source_is_quarantined_and_its_day_kept(root, template, capsys):
    raw, before = _ingest_one_landing_file(root)
    shutil.rmtree(root / "landing" / "_ingested")
    raw.write_bytes(b"")
    code, out = doctor(capsys, "--repair")
    assert code == 1
    assert out.splitlines()[-1] == (
        "Warning: lake/raw_readings/date=2024-01-03/part-import-p__20240103T000000.000000Z-1-0.parquet: its landing "
        "file is not in landing/_ingested/ (or is damaged itself), so its rows exist only in `readings` of 2024-01-03; "
        "that day was left as it is rather than rebuilt without them"
    )
    assert count(capsys, "SELECT count(*) FROM readings WHERE date = DATE '2024-01-03'") == before  # not replaced by less
