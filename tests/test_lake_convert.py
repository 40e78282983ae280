"""A lake written before the lake became Delta tables: refused with one line, converted by `doctor --convert`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iot_platform.cli import main
from iot_platform.io.commit import last_commit, load_state
from iot_platform.io.lake import Lake


def _t(values: list[float], start: int = 0) -> pa.Table:
    return pa.table({
        "sensor_id": ["s1"] * len(values),
        "ts": pa.array(range(start, start + len(values)), pa.timestamp("us", tz="UTC")),
        "temperature": values,
    })  # fmt: skip


def _old_lake(root: Path) -> None:
    """The old layout: data.parquet, a part the state file lists, a part of a batch that died."""
    d = root / "lake" / "readings" / "date=2024-01-01"
    d.mkdir(parents=True)
    pq.write_table(_t([1.0, 2.0]), d / "data.parquet")
    pq.write_table(_t([3.0], 10), d / "part-mb-1.parquet")
    pq.write_table(_t([4.0], 20), d / "part-mb-2.parquet")  # never committed
    (root / "lake" / "readings" / ".tmp" / "date=2024-01-01.abc").mkdir(parents=True)
    state = {"parts": {"readings": {"2024-01-01": {"part-mb-1.parquet": {"ts_min": 10, "ts_max": 10}}}},
             "landing_ingested": [], "batches": 3}  # fmt: skip
    (root / "lake" / "_state").mkdir(parents=True)
    (root / "lake" / "_state" / "micro_batch.json").write_text(json.dumps(state))


def test_an_old_lake_is_refused_with_the_command_that_converts_it(data_dir: Path, capsys):
    _old_lake(data_dir)
    assert main(["sql", "SELECT count(*) FROM readings"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"Error: {data_dir / 'lake' / 'readings'} is a plain Parquet directory from before the lake became Delta "
        "tables; run 'iot-platform doctor --convert' once to convert the lake in place\n"
    )


def test_doctor_convert_keeps_what_was_committed_and_only_that(data_dir: Path, capsys):
    _old_lake(data_dir)
    assert main(["doctor", "--convert"]) == 0
    assert capsys.readouterr().out == (
        "Converted readings: 2 files in 1 partitions; 1 uncommitted parts deleted\n"
        "Converted the micro-batch state (3 batches) to the commit record\n"
    )
    lake = Lake(data_dir)
    assert lake.read("readings", ["2024-01-01"])["temperature"].to_pylist() == [1.0, 2.0, 3.0]
    assert [f.name for f in lake.files("readings", "2024-01-01")] == ["data.parquet", "part-mb-1.parquet"]
    assert sorted(p.name for p in lake.partition_dir("readings", "2024-01-01").iterdir()) == ["data.parquet", "part-mb-1.parquet"]
    state = load_state(lake)
    assert (state.batches, list(state.day_parts("readings", "2024-01-01"))) == (3, ["part-mb-1.parquet"])
    assert last_commit(lake)[1] == 3
    assert not (data_dir / "lake" / "_state" / "micro_batch.json").exists()
    # a second run has nothing to do; the lake now answers queries
    assert main(["doctor", "--convert"]) == 0
    assert capsys.readouterr().out == "Nothing to convert: every lake table is a Delta table.\n"
    assert main(["sql", "--format", "csv", "SELECT count(*) AS n FROM readings"]) == 0
    assert capsys.readouterr().out == "n\n3\n"


def test_a_converted_lake_keeps_its_coverage(data_dir: Path):
    """The compacted file of a converted partition still says up to when the simulator is in it."""
    d = data_dir / "lake" / "readings" / "date=2024-01-01"
    d.mkdir(parents=True)
    pq.write_table(_t([1.0]).replace_schema_metadata({"iot.sim_until_us": "42"}), d / "data.parquet")
    main(["doctor", "--convert"])
    from iot_platform.io.ingest import sim_until

    assert sim_until(Lake(data_dir), __import__("datetime").date(2024, 1, 1)) == 42
