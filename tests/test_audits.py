"""The readings audits of one partition, from one scan: exact counts, both uniqueness paths."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from iot_platform.core.schemas import READINGS, conform
from iot_platform.io.audits import READINGS_AUDITS, audit_readings
from iot_platform.io.lake import Lake

DAY = dt.date(2024, 1, 3)
T0 = 1704240000_000000  # 2024-01-03T00:00:00Z


def _rows(sensors: list[str], ts: list[int], temperature: list[float] | None = None) -> pa.Table:
    return conform(pa.table({
        "sensor_id": pa.array(sensors, pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "temperature": pa.array(temperature or [20.0] * len(ts), pa.float64()),
    }), READINGS)  # fmt: skip


def _bad(lake: Lake) -> dict[str, int]:
    return {name: r.n_bad for name, r in audit_readings(lake, DAY).items()}


def test_a_sorted_day_passes_every_audit(lake: Lake):
    lake.replace_partition("readings", DAY, _rows(["a", "a", "b"], [T0, T0 + 1, T0]))
    assert _bad(lake) == dict.fromkeys(READINGS_AUDITS, 0)


def test_counts_of_each_audit_from_one_scan(lake: Lake):
    # unsorted (the GROUP BY path): one key twice, one reading of the next day, one impossible value
    t = _rows(["b", "a", "a", "c"], [T0, T0 + 5, T0 + 5, T0 + 86_400_000_000], [20.0, 20.0, 20.0, 500.0])
    lake.replace_partition("readings", DAY, t)
    assert _bad(lake) == {"schema": 0, "unique_key": 1, "no_null_keys": 0, "ts_in_partition": 1, "plausible": 1}
    example = audit_readings(lake, DAY)["unique_key"].examples
    assert [(e["sensor_id"], e["n"]) for e in example] == [("a", 2)]


def test_a_key_repeated_across_parts_is_found(lake: Lake):
    lake.replace_partition("readings", DAY, _rows(["a", "b"], [T0, T0]))
    lake.write_part("readings", DAY, "mb-1", _rows(["b"], [T0]))  # each file sorted, but b in both
    assert _bad(lake)["unique_key"] == 1
    lake.write_part("readings", DAY, "mb-1", _rows(["c"], [T0]))  # the retried part: disjoint now
    assert _bad(lake)["unique_key"] == 0


def test_a_missing_partition_fails_every_audit(lake: Lake):
    assert _bad(lake) == dict.fromkeys(READINGS_AUDITS, 1)
