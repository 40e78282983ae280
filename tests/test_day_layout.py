"""A compacted readings day keeps its last hour in row groups of its own (io.day_layout)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import READINGS, conform
from iot_platform.io.audits import _sorted_and_disjoint, audit_readings
from iot_platform.io.day_layout import TAIL_S, split_tail, tail_start_us
from iot_platform.io.downstream import read_ts_range, sensor_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake

DAY = dt.date(2024, 1, 3)
T0 = sim.day_start_us(DAY)
CUT = T0 + 86_400_000_000 - 3_600_000_000


def _rows(sensors: list[str], ts: list[int]) -> pa.Table:
    return conform(pa.table({"sensor_id": pa.array(sensors, pa.string()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                             "temperature": pa.array([20.0] * len(ts), pa.float64())}), READINGS)  # fmt: skip


def _row_groups(path) -> list[tuple[int, int, str, str, int]]:
    """(ts min, ts max, sensor min, sensor max, rows) of each row group."""
    meta = pq.read_metadata(path)
    names = meta.schema.to_arrow_schema().names
    out = []
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        ts, sid = rg.column(names.index("ts")).statistics, rg.column(names.index("sensor_id")).statistics
        out.append((round(ts.min.timestamp() * 1e6), round(ts.max.timestamp() * 1e6), sid.min, sid.max, rg.num_rows))
    return out


def test_the_tail_starts_an_hour_before_the_day_ends():
    assert TAIL_S == 3600
    assert tail_start_us(DAY) == CUT == 1704322800_000000  # 2024-01-03T23:00:00Z


def test_split_tail_keeps_every_row_and_the_order_of_each_piece():
    t = _rows(["a", "a", "a", "b", "b"], [T0, CUT - 1, CUT, T0 + 5, CUT + 7])
    main, tail = split_tail(t, DAY)
    assert main["sensor_id"].to_pylist() == ["a", "a", "b"]
    assert main["ts"].cast(pa.int64()).to_pylist() == [T0, CUT - 1, T0 + 5]
    assert tail["sensor_id"].to_pylist() == ["a", "b"]
    assert tail["ts"].cast(pa.int64()).to_pylist() == [CUT, CUT + 7]
    # a chunk with no tail (a day built before 23:00) is one piece; an empty one stays one empty piece
    assert [p.num_rows for p in split_tail(t.slice(0, 2), DAY)] == [2]
    assert [p.num_rows for p in split_tail(t.slice(0, 0), DAY)] == [0]


def test_a_built_day_has_each_chunk_s_last_hour_in_its_own_row_groups(lake: Lake):
    # 7 sensors every minute, built 5 sensors at a time: chunks of 5 and 2 sensors
    fleet = sim.FleetParams(seed=3, n_sensors=7, sample_interval_s=60.0)
    build_readings_day(lake, fleet, DAY)
    (path,) = lake.files("readings", DAY)
    groups = _row_groups(path)
    ids = fleet.sensor_ids
    assert [(g[2], g[3], g[0] >= CUT, g[1] < CUT) for g in groups] == [
        (ids[0], ids[4], False, True), (ids[0], ids[4], True, False),
        (ids[5], ids[6], False, True), (ids[5], ids[6], True, False),
    ]  # fmt: skip
    everything = pq.read_table(path)
    assert sum(g[4] for g in groups) == everything.num_rows
    ts = everything["ts"].cast(pa.int64())
    assert [g[4] for g in groups][1] + [g[4] for g in groups][3] == pc.sum(pc.greater_equal(ts, CUT)).as_py()
    # a look-back into the last hour reads the same rows as a filter of the whole day
    lo, hi = CUT + 40 * 60_000_000, T0 + 86_400_000_000
    got = read_ts_range(lake, "readings", [DAY], "ts", lo, hi).sort_by([("sensor_id", "ascending"), ("ts", "ascending")])
    want = everything.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
    assert got.num_rows == want.num_rows > 0
    assert got.equals(conform(want, READINGS))
    # one sensor's day: its row groups only, all of its rows
    one = sensor_day(lake, DAY, ids[1])["ts"].cast(pa.int64()).to_pylist()
    assert sorted(one) == everything.filter(pc.equal(everything["sensor_id"], ids[1]))["ts"].cast(pa.int64()).to_pylist()
    # the audit's fast uniqueness test reads the layout as sorted
    assert _sorted_and_disjoint([path], DAY) is True
    assert {name: r.n_bad for name, r in audit_readings(lake, DAY).items()}["unique_key"] == 0


def test_the_fast_uniqueness_test_finds_a_key_twice_in_either_stream(lake: Lake):
    good = _rows(["a", "a", "b", "a", "b"], [T0, T0 + 1, T0, CUT, CUT])  # a chunk: before the tail, then its tail
    lake.replace_partition("readings", DAY, good)
    assert _sorted_and_disjoint(lake.files("readings", DAY), DAY) is True
    for bad in (
        _rows(["a", "a", "b", "a", "b"], [T0, T0, T0, CUT, CUT]),  # a key twice before the tail
        _rows(["a", "b", "a", "b", "b"], [T0, T0, CUT, CUT, CUT]),  # a key twice in the tail
        _rows(["b", "a", "a", "b"], [T0, T0, CUT, CUT]),  # out of order before the tail
    ):
        lake.replace_partition("readings", DAY, bad)
        assert _sorted_and_disjoint(lake.files("readings", DAY), DAY) is False
    # the audit's answer does not depend on which path found it
    lake.replace_partition("readings", DAY, _rows(["a", "b", "a", "b", "b"], [T0, T0, CUT, CUT, CUT]))
    assert audit_readings(lake, DAY)["unique_key"].n_bad == 1


def _filtered(chunk: pa.Table, day) -> list[pa.Table]:
    """The definition: the rows before the tail, then the tail's, each in the chunk's order (a null ts first)."""
    in_tail = pc.fill_null(pc.greater_equal(chunk["ts"].cast(pa.int64()), tail_start_us(day)), False)
    pieces = [chunk.filter(pc.invert(in_tail)), chunk.filter(in_tail)]
    return [p for p in pieces if p.num_rows] or [chunk.slice(0, 0)]


def test_split_tail_slices_the_pieces_the_filters_give():
    sorted_rows = _rows(["a", "a", "a", "b", "b", "c"], [T0, CUT - 1, CUT, T0 + 5, CUT + 7, CUT + 9])
    shuffled = sorted_rows.take(pa.array([5, 0, 3, 2, 1, 4]))
    many_runs = _rows(["a"] * 600, [CUT + (i % 2) * 10 - 5 + i for i in range(600)])  # 600 short runs
    for chunk in (sorted_rows, shuffled, many_runs, sorted_rows.slice(0, 2), sorted_rows.slice(2), sorted_rows.slice(0, 0)):
        ours, theirs = split_tail(chunk, DAY), _filtered(chunk, DAY)
        assert [p.to_pylist() for p in ours] == [p.to_pylist() for p in theirs]
        assert all(p.schema == chunk.schema for p in ours)
    assert [p["ts"].cast(pa.int64()).to_pylist() for p in split_tail(sorted_rows, DAY)] == [
        [T0, CUT - 1, T0 + 5], [CUT, CUT + 7, CUT + 9]
    ]
