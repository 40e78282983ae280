"""The dashboard's reads (io.dashboard_data) over the lake on a real S3-compatible server (SeaweedFS).

The same data is written to a local lake and to Delta tables under ``IOT_LAKE_URL``:
every read must give the local lake's answer, exactly, through Arrow datasets over the
store (not DuckDB's Python-filesystem bridge); the per-file cache of the fleet view reads
only new parts; readers on several threads at once agree.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_dashboard_data import D0, DAY, US, readings

from iot_platform.core.schemas import ANOMALIES, WINDOW_STATS, conform
from iot_platform.io.dashboard_data import DashboardData
from iot_platform.io.lake import Lake
from iot_platform.io.lake_store import StoreFile
from iot_platform.io.objstore import lake_store_from_env

pytestmark = pytest.mark.objectstore

DAY2 = DAY + dt.timedelta(days=1)


def windows(sensor: str, day_index: int, n: int = 1440) -> pa.Table:
    ends = D0 + day_index * 86_400 * US + (np.arange(n) + 1) * 60 * US
    mean = np.arange(n, dtype=float) + 100 * day_index
    return conform(pa.table({
        "sensor_id": [sensor] * n, "window_start": pa.array(ends - 300 * US).cast(pa.timestamp("us", tz="UTC")),
        "window_end": pa.array(ends).cast(pa.timestamp("us", tz="UTC")), "n_readings": np.full(n, 300),
        "temp_mean": mean, "temp_min": mean - 1, "temp_max": mean + 1,
    }), WINDOW_STATS)  # fmt: skip


def episodes(day_index: int) -> pa.Table:
    start = D0 + day_index * 86_400 * US + np.array([60, 600, 7200]) * US
    return conform(pa.table({
        "anomaly_id": [f"x{day_index}", f"y{day_index}", f"z{day_index}"], "sensor_id": ["a", "b", "__fleet__"],
        "anomaly_type": ["spike", "drift", "systemic"], "severity": ["critical", "warning", "critical"],
        "metric": ["temperature"] * 3, "start_ts": pa.array(start).cast(pa.timestamp("us", tz="UTC")),
        "end_ts": pa.array(start + 30 * US).cast(pa.timestamp("us", tz="UTC")), "value": [40.0, 41.0, 42.0],
        "score": [9.0, 4.0, 7.5], "message": ["m", "n", "o"],
    }), ANOMALIES)  # fmt: skip


def fill(lake: Lake) -> None:
    """Two days of three sensors: each day a compacted file, then micro-batch parts on the newest."""
    lake.replace_partition("readings", DAY, pa.concat_tables([readings("a", 0, 7200), readings("b", 0, 3600, temp0=30.0)]))
    lake.replace_partition("readings", DAY2, pa.concat_tables([readings("a", 86_400, 3000, temp0=5.0), readings("c", 86_400, 10, step_s=60)]))
    lake.write_part("readings", DAY2, "mb-1", pa.concat_tables([readings("a", 89_400, 30, temp0=-3.0), readings("b", 89_400, 30)]))
    lake.write_part("readings", DAY2, "mb-2", readings("c", 89_430, 5, temp0=50.0))
    for i, day in enumerate((DAY, DAY2)):
        lake.replace_partition("window_stats", day, pa.concat_tables([windows("a", i), windows("b", i, 600)]))
        lake.replace_partition("anomalies", day, episodes(i), metadata={"iot.until_us": str(D0 + (i + 1) * 86_400 * US)})


def reads(data: DashboardData) -> dict[str, object]:
    """Everything the dashboard asks the lake, for the sensors and spans of the data above."""
    end = D0 + 2 * 86_400 * US
    out: dict[str, object] = {
        "last_readings": data.last_readings().to_pylist(),
        "recent_episodes": data.recent_episodes().sort_by("end_ts").to_pylist(),
        "detection_until": data.freshness(None).detection_until_us,
    }
    for sensor in ("a", "b", "c"):
        out[f"{sensor} raw 10 min"] = data.sensor_readings(sensor, D0 + 89_100 * US, D0 + 89_700 * US).to_pylist()
        out[f"{sensor} day averaged"] = data.sensor_readings(sensor, D0 + 86_400 * US, end).to_pylist()
        out[f"{sensor} across midnight"] = data.sensor_readings(sensor, D0 + 3000 * US, D0 + 89_000 * US).to_pylist()
        out[f"{sensor} windows 1 h"] = data.sensor_windows(sensor, D0 + 86_400 * US, D0 + 90_000 * US).to_pylist()
        out[f"{sensor} windows 2 days"] = data.sensor_windows(sensor, D0, end).to_pylist()
        out[f"{sensor} episodes"] = data.sensor_episodes(sensor, D0, end).to_pylist()
    return out


@pytest.fixture
def both(tmp_path: Path, s3_lake_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[DashboardData, DashboardData, Lake]:
    """(the local lake's reader, the store's reader, the store's lake), the same data in both."""
    monkeypatch.delenv("IOT_LAKE_URL", raising=False)
    (tmp_path / "local").mkdir()
    fill(Lake(tmp_path / "local"))
    local = DashboardData(tmp_path / "local")
    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url)
    (tmp_path / "machine").mkdir()
    lake = Lake(tmp_path / "machine", lake_store_from_env())
    fill(lake)
    remote = DashboardData(tmp_path / "machine")
    return local, remote, lake


def test_the_store_gives_the_local_lakes_answers(both):
    local, remote, _ = both
    assert isinstance(remote.lake.files("readings", DAY2)[0], StoreFile)  # really the store
    want = reads(local)
    assert want["last_readings"] and want["a raw 10 min"] and want["c episodes"]  # the comparison is not of empty tables
    assert [(r["sensor_id"], r["last_ts"], r["temperature"]) for r in want["last_readings"]] == [
        ("a", D0 + 89_429 * US, -3.0 + 29), ("b", D0 + 89_429 * US, 20.0 + 29), ("c", D0 + 89_434 * US, 54.0)
    ]  # fmt: skip
    assert reads(remote) == want


def test_the_fleet_cache_reads_only_new_parts_on_the_store(both):
    _, remote, lake = both
    first = remote.last_readings()
    cached = dict(remote._last_cache)
    assert sorted(cached) == sorted(str(f) for d in (DAY, DAY2) for f in lake.files("readings", d))
    lake.write_part("readings", DAY2, "mb-3", readings("b", 89_500, 2, temp0=7.0))
    got = remote.last_readings()
    assert got.filter(pa.compute.equal(got["sensor_id"], "b")).select(["last_ts", "temperature"]).to_pylist() == [
        {"last_ts": D0 + 89_501 * US, "temperature": 8.0}
    ]
    assert got.filter(pa.compute.not_equal(got["sensor_id"], "b")) == first.filter(pa.compute.not_equal(first["sensor_id"], "b"))
    for key, entry in cached.items():  # the files read before: their aggregates reused, not read again
        assert remote._last_cache[key] is entry
    assert len(remote._last_cache) == len(cached) + 1


def test_readers_on_several_threads_agree(both):
    local, remote, _ = both
    want = {"last": local.last_readings(), "raw": local.sensor_readings("a", D0 + 89_100 * US, D0 + 89_700 * US),
            "windows": local.sensor_windows("b", D0, D0 + 2 * 86_400 * US)}  # fmt: skip
    results: list[dict[str, pa.Table]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append({"last": remote.last_readings(), "raw": remote.sensor_readings("a", D0 + 89_100 * US, D0 + 89_700 * US),
                                "windows": remote.sensor_windows("b", D0, D0 + 2 * 86_400 * US)})  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 12
    for got in results:
        assert {k: v.to_pylist() for k, v in got.items()} == {k: v.to_pylist() for k, v in want.items()}
