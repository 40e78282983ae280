"""A damaged file in today's partitions is quarantined loudly and its day rebuilt; ingestion never stalls."""

from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc

from iot_platform.core import simulator as sim
from iot_platform.core.validation import validate_readings
from iot_platform.io.downstream import DownstreamSettings, compute_day, make_update_downstream
from iot_platform.io.lake import Lake
from iot_platform.io.microbatch import run_micro_batch

DAY = dt.date(2024, 1, 3)
D0 = sim.day_start_us(DAY)
S = 1_000_000
FIRST = dt.date(2024, 1, 1)
KEY = [("sensor_id", "ascending"), ("ts", "ascending")]


def _batches(lake: Lake, fleet, ends: list[int]):
    update = make_update_downstream(DownstreamSettings(fleet=fleet), FIRST)
    return [
        run_micro_batch(lake, f"b{u}", D0 + u * S, fleet=fleet, landing=lake.root / "landing", first_day=FIRST, downstream=update)
        for u in ends
    ]


def _truncate(path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data[: len(data) // 2]


def test_a_truncated_readings_part_is_quarantined_and_the_day_rebuilt(lake: Lake, small_fleet):
    _batches(lake, small_fleet, [600, 630, 660])
    part = lake.partition_dir("readings", DAY) / "part-b630.parquet"
    half = _truncate(part)
    [r] = _batches(lake, small_fleet, [3600])
    assert list(r.quarantined) == ["lake/readings/date=2024-01-03/part-b630.parquet"]
    assert r.quarantined["lake/readings/date=2024-01-03/part-b630.parquet"].startswith("truncated (no Parquet footer at its end; ")
    moved = lake.lake_dir / "_quarantine" / "readings" / "date=2024-01-03" / "part-b630.parquet"
    assert moved.read_bytes() == half  # the damaged bytes are kept, never deleted
    assert moved.with_name("part-b630.parquet.reason.txt").read_text().startswith("truncated (no Parquet footer")
    # nothing lost: the day holds every simulated reading up to the batch end
    want = validate_readings(sim.simulate(small_fleet, D0, D0 + 3600 * S).readings).good
    assert lake.read("readings", [DAY]).sort_by(KEY).equals(want)
    # and its derived tables equal the day computed from scratch
    settings = DownstreamSettings(fleet=small_fleet)
    ref = compute_day(lake, DAY, settings, now_us=D0 + 3600 * S)
    got = lake.read("window_stats", [DAY]).sort_by([("sensor_id", "ascending"), ("window_end", "ascending")])
    assert got.equals(ref.window_stats.sort_by([("sensor_id", "ascending"), ("window_end", "ascending")]))
    # the next batch runs as usual
    [nxt] = _batches(lake, small_fleet, [3630])
    assert (nxt.quarantined, nxt.ingested) == ({}, 3 * 3)


def test_a_junk_file_in_a_derived_partition_makes_its_day_rebuilt(lake: Lake, small_fleet):
    _batches(lake, small_fleet, [600, 630])
    junk = lake.partition_dir("window_stats", DAY) / "junk.parquet"
    junk.write_bytes(bytes(range(256)) * 20)
    lake.commit("window_stats", [(DAY, junk)])  # a file the table's log references, damaged
    [r] = _batches(lake, small_fleet, [660])
    assert list(r.quarantined) == ["lake/window_stats/date=2024-01-03/junk.parquet"]
    assert r.late_days == [] and "2024-01-03" in r.partitions
    ws = lake.read("window_stats", [DAY])
    assert ws.num_rows == 3 * len(range(60, 660 - 30 + 1, 60))  # every window up to the watermark, once
    assert pc.count_distinct(pc.binary_join_element_wise(ws["sensor_id"], ws["window_end"].cast("string"), "|")).as_py() == ws.num_rows
