"""The Parquet lake: atomic partition replacement, idempotent rewrites, crash safety."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import textwrap


import duckdb
import pyarrow as pa
import pytest

from iot_platform.io.lake import Lake


def _t(values: list[float]) -> pa.Table:
    return pa.table(
        {
            "sensor_id": ["s"] * len(values),
            "ts": pa.array(range(len(values)), pa.timestamp("us", tz="UTC")),
            "temperature": values,
        }
    )


def test_replace_is_idempotent_to_the_byte(lake: Lake):
    lake.replace_partition("readings", "2024-01-01", _t([1.0, 2.0]))
    first = hashlib.sha256(lake.files("readings", "2024-01-01")[0].read_bytes()).hexdigest()
    lake.replace_partition("readings", "2024-01-01", _t([1.0, 2.0]))
    files = lake.files("readings", "2024-01-01")
    assert [f.name[:5] for f in files] == ["data-"]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == first


def test_replace_removes_micro_batch_parts(lake: Lake):
    lake.write_part("readings", "2024-01-01", "b1", _t([1.0]))
    lake.write_part("readings", "2024-01-01", "b1", _t([1.0]))  # a retry overwrites its own part
    lake.write_part("readings", "2024-01-01", "b2", _t([2.0]))
    assert lake.read("readings", ["2024-01-01"]).num_rows == 2
    lake.replace_partition("readings", "2024-01-01", _t([1.0, 2.0, 3.0]))
    assert [f.name[:5] for f in lake.files("readings", "2024-01-01")] == ["data-"]


def test_hive_layout_is_readable_by_duckdb(lake: Lake):
    lake.replace_partition("readings", "2024-01-01", _t([1.0, 2.0]))
    lake.replace_partition("readings", "2024-01-02", _t([3.0]))
    rows = duckdb.sql(
        f"SELECT date, count(*) FROM {lake.scan_sql('readings')} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(str(d), n) for d, n in rows] == [("2024-01-01", 2), ("2024-01-02", 1)]


def test_an_exception_mid_write_leaves_the_old_partition(lake: Lake):
    lake.replace_partition("readings", "2024-01-01", _t([1.0, 2.0]))

    def chunks():
        yield _t([9.0])
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        lake.replace_partition("readings", "2024-01-01", chunks())
    assert lake.read("readings", ["2024-01-01"])["temperature"].to_pylist() == [1.0, 2.0]
    # nothing left beside the partition's one file: no half file, no uncommitted file
    assert [p.name[:5] for p in lake.partition_dir("readings", "2024-01-01").iterdir()] == ["data-"]


def test_a_killed_writer_leaves_the_old_partition(lake: Lake):
    """SIGKILL a real process while it streams a new version of the partition."""
    lake.replace_partition("readings", "2024-01-01", _t([1.0, 2.0]))
    _kill_mid_write(lake, 'lake.replace_partition("readings", "2024-01-01", chunks())')  # half written now
    assert lake.read("readings", ["2024-01-01"])["temperature"].to_pylist() == [1.0, 2.0]
    assert [f.name[:5] for f in lake.files("readings", "2024-01-01")] == ["data-"]


def test_writers_of_one_partition_take_turns(lake: Lake):
    """A second writer waits for the partition lock instead of interleaving."""
    script = textwrap.dedent(
        f"""
        import time
        from iot_platform.io.lake import Lake
        with Lake({str(lake.root)!r}).lock("readings", "2024-01-01"):
            print("locked", flush=True)
            time.sleep(1.0)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    lake.replace_partition("readings", "2024-01-01", _t([5.0]))
    # we could only get the lock after the other process released it
    assert proc.poll() is not None or proc.wait(timeout=10) == 0
    assert lake.read("readings", ["2024-01-01"])["temperature"].to_pylist() == [5.0]



def _kill_mid_write(lake: Lake, call: str) -> None:
    """Run ``call`` (a Lake method call streaming chunks) in a real process; SIGKILL it mid-write."""
    script = textwrap.dedent(
        f"""
        import time, pyarrow as pa
        from iot_platform.io.lake import Lake
        def chunks():
            for i in range(1000):
                yield pa.table({{"sensor_id": ["s"] * 1000, "ts": pa.array(range(i * 1000, (i + 1) * 1000), pa.timestamp("us", tz="UTC")), "temperature": [float(i)] * 1000}})
                print("chunk", flush=True)
                time.sleep(0.01)
        lake = Lake({str(lake.root)!r})
        {call}
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_staging_of_a_killed_backfill_is_removed_by_the_next_write_of_the_table(lake: Lake):
    _kill_mid_write(lake, 'lake.replace_partition("readings", "2024-01-02", chunks())')
    partition = lake.partition_dir("readings", "2024-01-02")
    [left] = list(partition.iterdir())
    assert left.name.startswith(".data-") and left.name.endswith(".tmp") and lake.files("readings", "2024-01-02") == []
    assert left.stat().st_size > 0  # the killed writer's half file
    # a write of another day of the same table cleans it: that day's lock is free
    lake.replace_partition("readings", "2024-01-05", _t([1.0]))
    assert list(partition.iterdir()) == []
    assert lake.days("readings") == [dt.date(2024, 1, 5)]


def test_staging_of_a_live_writer_is_left_alone(lake: Lake):
    partition = lake.partition_dir("readings", "2024-01-02")
    partition.mkdir(parents=True)
    (partition / ".data-abc.parquet.123.tmp").write_bytes(b"PAR1")
    with lake.lock("readings", "2024-01-02"):  # a writer of that day is still running
        lake.replace_partition("readings", "2024-01-05", _t([1.0]))
        assert [p.name for p in partition.iterdir()] == [".data-abc.parquet.123.tmp"]
    lake.replace_partition("readings", "2024-01-05", _t([1.0]))
    assert list(partition.iterdir()) == []


def test_half_written_part_of_a_killed_micro_batch_is_removed_by_the_next_part(lake: Lake):
    _kill_mid_write(lake, 'from iot_platform.io.lake import write_parquet_atomic; write_parquet_atomic(chunks(), lake.partition_dir("readings", "2024-01-02") / "part-b1.parquet", schema=pa.schema([("sensor_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("temperature", pa.float64())]))')
    d = lake.partition_dir("readings", "2024-01-02")
    assert [p.name.endswith(".tmp") for p in d.iterdir()] == [True]
    lake.write_part("readings", "2024-01-02", "b2", _t([1.0]))
    assert [p.name for p in d.iterdir()] == ["part-b2.parquet"]


def test_cleanup_never_removes_a_file_another_process_committed_a_moment_ago(tmp_path):
    """Writer A reads what the table holds; writer B (another process: another Lake object) commits
    a new file to another day and lets go of that day's lock; A's clean-up of killed writers'
    leftovers must read the table again under that day's lock, not delete B's committed file."""
    day1, day2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    a, b = Lake(tmp_path), Lake(tmp_path)
    a.replace_partition("readings", day1, _t([1.0] * 3))
    a.replace_partition("readings", day2, _t([1.0] * 3))
    real, calls = a._snapshot, []

    def snapshot_then_b_commits(table):
        got = real(table)
        if not calls:  # the moment after A's first look: B replaces day 2 in between
            calls.append(table)
            b.replace_partition("readings", day2, _t([2.0] * 5))
        return got

    a._snapshot = snapshot_then_b_commits
    a.remove_stale_staging("readings", day1)
    assert Lake(tmp_path).read("readings", [day2]).num_rows == 5  # B's file is there and whole


def test_cleanup_leaves_a_half_written_file_whose_writer_holds_the_guarding_lock(tmp_path):
    """rejected_readings is written under the readings lock (LOCK_OF): another writer's clean-up must see
    that lock held and keep the half-written file (a day's build in another process lost its file)."""
    from iot_platform.core.validation import REJECTED

    day1, day2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    a, b = Lake(tmp_path), Lake(tmp_path)
    b.replace_partition("rejected_readings", day2, REJECTED.empty_table())
    half = b.partition_dir("rejected_readings", day2) / ".data-x.parquet.y.tmp"
    with b.lock("readings", day2):  # B builds day 2: its rejected rows are being written
        half.write_bytes(b"PAR1")
        assert a.remove_stale_staging("rejected_readings", day1) == []
        assert half.exists()
    assert a.remove_stale_staging("rejected_readings", day1) == [half]  # B gone: a killed writer's leftover
