"""readings -> window_stats -> anomalies materialized for consecutive days, queried with DuckDB."""

from __future__ import annotations

import dagster as dg
import duckdb

from iot_platform.definitions import defs
from iot_platform.io.lake import Lake


def test_consecutive_days_materialize_and_windows_straddle_midnight(instance, resources, lake: Lake):
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        instance=instance,
        resources=resources,
        selection=dg.AssetSelection.groups("lake"),
        tags={"dagster/asset_partition_range_start": "2024-01-02", "dagster/asset_partition_range_end": "2024-01-03"},
    )
    assert result.success
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    r = f"{lake.scan_sql('readings')}"
    w = f"{lake.scan_sql('window_stats')}"
    a = f"{lake.scan_sql('anomalies')}"

    # at most one window per sensor every 60 s (1,440 a day; none while a sensor is down),
    # ending on the minute, in (midnight, next midnight]
    per_day = con.sql(
        f"SELECT date, max(n), bool_and(aligned) FROM (SELECT date, sensor_id, count(*) AS n, "
        f"bool_and(epoch_us(window_end) % 60000000 = 0) AS aligned FROM {w} GROUP BY ALL) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(str(d), n, ok) for d, n, ok in per_day] == [("2024-01-02", 1440, True), ("2024-01-03", 1440, True)]
    bounds = con.sql(f"SELECT min(window_end), max(window_end) FROM {w} WHERE date = DATE '2024-01-03'").fetchall()[0]
    assert [b.isoformat() for b in bounds] == ["2024-01-03T00:01:00+00:00", "2024-01-04T00:00:00+00:00"]

    # the first windows of a day count the previous day's readings: exactly what DuckDB counts
    got = con.sql(
        f"""
        SELECT w.sensor_id, w.window_end, w.n_readings,
               (SELECT count(*) FROM {r} AS x WHERE x.sensor_id = w.sensor_id
                  AND x.ts >= w.window_start AND x.ts < w.window_end
                  AND x.temperature BETWEEN -40 AND 85) AS counted
        FROM {w} AS w
        WHERE w.date = DATE '2024-01-03' AND w.window_end <= TIMESTAMPTZ '2024-01-03 00:05:00+00'
        ORDER BY 1, 2
        """
    ).fetchall()
    assert len(got) == 3 * 5
    assert all(n == counted and n > 30 for _, _, n, counted in got)
    assert all(start.date().isoformat() == "2024-01-02" for (start,) in con.sql(
        f"SELECT window_start FROM {w} WHERE window_end = TIMESTAMPTZ '2024-01-03 00:01:00+00'").fetchall())  # fmt: skip

    # anomalies: valid types and severities, unique ids, each day's checks passed
    kinds = con.sql(f"SELECT DISTINCT severity FROM {a} ORDER BY 1").fetchall()
    assert set(k for (k,) in kinds) <= {"warning", "critical"}
    assert con.sql(f"SELECT count(*) - count(DISTINCT anomaly_id) FROM {a}").fetchall()[0] == (0,)
    evaluations = result.get_asset_check_evaluations()
    assert {e.asset_key.to_user_string() for e in evaluations} == {"readings", "window_stats", "anomalies"}
    assert all(e.passed for e in evaluations)
