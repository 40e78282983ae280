-- fleet_hourly: one row per UTC hour with data: the whole fleet's aggregates of every metric.
-- Grain: hour.  Time column: hour (windows are placed in the hour their window starts in).
--
-- Means are weighted by the readings behind each window; minima and maxima are over
-- the windows' own minima and maxima; battery and missing rate are plain means over
-- windows. Built from window_tiles, so each reading weighs once.
{{ config(materialized='table') }}
SELECT
    date_trunc('hour', window_start) AS hour,
    CAST(date_trunc('hour', window_start) AS DATE) AS date,
    count(DISTINCT sensor_id) FILTER (WHERE n_readings > 0) AS n_sensors,
    sum(n_readings)::BIGINT AS n_readings,
    sum(temp_mean * n_readings) / sum(n_readings) FILTER (WHERE temp_mean IS NOT NULL) AS temp_mean,
    min(temp_min) AS temp_min,
    max(temp_max) AS temp_max,
    sum(humidity_mean * n_readings) / sum(n_readings) FILTER (WHERE humidity_mean IS NOT NULL) AS humidity_mean,
    sum(pressure_mean * n_readings) / sum(n_readings) FILTER (WHERE pressure_mean IS NOT NULL) AS pressure_mean,
    sum(vibration_mean * n_readings) / sum(n_readings) FILTER (WHERE vibration_mean IS NOT NULL) AS vibration_mean,
    max(vibration_max) AS vibration_max,
    avg(battery_level) AS battery_mean,
    min(battery_level) AS battery_min,
    avg(missing_rate) AS missing_rate
FROM {{ ref('window_tiles') }}
GROUP BY hour
ORDER BY hour
