-- sensor_health_daily: one row per sensor and UTC day: how much the sensor reported, how
-- complete and how fresh its data was, its battery, and the anomalies it raised.
-- Grain: sensor_id, date.  Time column: date (the UTC day).
--
-- A table rebuilt whole at every refresh, so it reads only cheap columns: window
-- timestamps, counts, missing rates and battery levels of window_stats (a year of 100
-- sensors in seconds), and anomalies; never raw readings. The hour-by-hour metrics are
-- in sensor_hourly. n_readings counts each reading once (see window_tiles); it is the
-- day's exact count when the window length divides a day (300 s, the default at 1 Hz);
-- otherwise a window straddling midnight counts whole in the day it ends in, so a day
-- can be off by a window's readings while sums over days stay exact. missing_rate is
-- the mean of the tiling windows' missing rates; coverage is the fraction of the day
-- covered by tiling windows that held readings (capped at 1). last_seen is the start of
-- the last window that held a reading: the last reading came at most one window length
-- later. A sensor that raised anomalies on a day without any window (silent all day)
-- still gets a row, with n_readings = 0. Fleet-wide anomalies (sensor_id '__fleet__')
-- are not a sensor's and are left out.
{{ config(materialized='table') }}
WITH tiles AS (
    SELECT
        sensor_id,
        date,
        sum(n_readings)::BIGINT AS n_readings,
        count(*) FILTER (WHERE n_readings > 0) AS n_windows,
        least(coalesce(sum(epoch_us(window_end) - epoch_us(window_start)) FILTER (WHERE n_readings > 0), 0) / 86400e6, 1.0) AS coverage,
        avg(missing_rate) AS missing_rate,
        min(battery_level) AS battery_min
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
    coalesce(t.n_readings, 0) AS n_readings,
    coalesce(t.n_windows, 0) AS n_windows,
    coalesce(t.coverage, 0.0) AS coverage,
    t.missing_rate,
    t.battery_min,
    s.last_seen,
    coalesce(a.n_anomalies, 0) AS n_anomalies,
    coalesce(a.n_warning, 0) AS n_warning,
    coalesce(a.n_critical, 0) AS n_critical,
    coalesce(a.anomaly_types, []::VARCHAR[]) AS anomaly_types
FROM seen AS s
LEFT JOIN tiles AS t ON t.sensor_id = s.sensor_id AND t.date = s.date
FULL OUTER JOIN anomalies AS a ON a.sensor_id = s.sensor_id AND a.date = s.date
ORDER BY date, sensor_id
