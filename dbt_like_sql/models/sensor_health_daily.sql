-- sensor_health_daily: one row per sensor and UTC day: how much the sensor reported, how
-- complete and how fresh its data was, its battery, and the anomalies it raised.
-- Grain: sensor_id, date.  Time column: date (the UTC day).
--
-- Built from window statistics and anomalies, not from raw readings, so a full rebuild
-- reads the compact window statistics of the whole history in seconds. n_readings sums
-- window_tiles (each reading once). last_seen is the start of the last window that held
-- a reading: windows hop on a grid, so the last reading came within one hop (60 s by
-- default) after it. A sensor that raised anomalies on a day without any window (silent
-- all day) still gets a row, with n_readings = 0. Fleet-wide anomalies (sensor_id
-- '__fleet__') are not a sensor's and are left out.
{{ config(materialized='table') }}
WITH windows AS (
    SELECT
        sensor_id,
        date,
        sum(n_readings)::BIGINT AS n_readings,
        count(*) FILTER (WHERE n_readings > 0) AS n_windows,
        sum(date_diff('microsecond', window_start, window_end)) FILTER (WHERE n_readings > 0) / 86400e6 AS coverage,
        avg(missing_rate) AS missing_rate,
        min(battery_level) AS battery_min,
        min(temp_min) AS temp_min,
        max(temp_max) AS temp_max,
        max(vibration_max) AS vibration_max
    FROM {{ ref('window_tiles') }}
    GROUP BY sensor_id, date
),
seen AS (
    SELECT sensor_id, date, max(window_start) FILTER (WHERE n_readings > 0) AS last_seen
    FROM {{ source('lake', 'window_stats') }}
    GROUP BY sensor_id, date
),
anomalies AS (
    SELECT
        sensor_id,
        date,
        count(*) AS n_anomalies,
        count(*) FILTER (WHERE severity = 'warning') AS n_warning,
        count(*) FILTER (WHERE severity = 'critical') AS n_critical,
        list_sort(list_distinct(list(anomaly_type))) AS anomaly_types
    FROM {{ source('lake', 'anomalies') }}
    WHERE sensor_id <> '__fleet__'
    GROUP BY sensor_id, date
)
SELECT
    coalesce(s.sensor_id, a.sensor_id) AS sensor_id,
    coalesce(s.date, a.date) AS date,
    coalesce(w.n_readings, 0) AS n_readings,
    coalesce(w.n_windows, 0) AS n_windows,
    coalesce(w.coverage, 0.0) AS coverage,
    w.missing_rate,
    w.battery_min,
    s.last_seen,
    w.temp_min,
    w.temp_max,
    w.vibration_max,
    coalesce(a.n_anomalies, 0) AS n_anomalies,
    coalesce(a.n_warning, 0) AS n_warning,
    coalesce(a.n_critical, 0) AS n_critical,
    coalesce(a.anomaly_types, []::VARCHAR[]) AS anomaly_types
FROM seen AS s
LEFT JOIN windows AS w ON w.sensor_id = s.sensor_id AND w.date = s.date
FULL OUTER JOIN anomalies AS a ON a.sensor_id = s.sensor_id AND a.date = s.date
ORDER BY date, sensor_id
