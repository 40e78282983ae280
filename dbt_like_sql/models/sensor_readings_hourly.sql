-- sensor_readings_hourly: one row per sensor and UTC hour of raw readings: how many, the
-- first and last, and each metric's mean, minimum and maximum, exactly.
-- Grain: sensor_id, hour.  Time column: hour (partition column: date).
--
-- A view over raw readings (8.6 million rows a day for 100 sensors at 1 Hz): filter on
-- date, e.g. WHERE date = DATE '2024-03-01' AND sensor_id = 'sensor_007', and only those
-- days' files are read. sensor_hourly has the same grain from window statistics, cheap
-- over any range. No data tests: a test would scan every reading at every refresh.
-- Hours come from integer epoch arithmetic: UTC in any session time zone, and much
-- faster than date_trunc() on TIMESTAMPTZ.
{{ config(materialized='view') }}
SELECT
    sensor_id,
    make_timestamptz(epoch_us(ts) // 3600000000 * 3600000000) AS hour,
    date,
    count(*) AS n_readings,
    min(ts) AS first_ts,
    max(ts) AS last_ts,
    avg(temperature) AS temperature_mean,
    min(temperature) AS temperature_min,
    max(temperature) AS temperature_max,
    avg(humidity) AS humidity_mean,
    min(humidity) AS humidity_min,
    max(humidity) AS humidity_max,
    avg(pressure) AS pressure_mean,
    min(pressure) AS pressure_min,
    max(pressure) AS pressure_max,
    avg(vibration) AS vibration_mean,
    min(vibration) AS vibration_min,
    max(vibration) AS vibration_max,
    avg(battery_level) AS battery_level_mean,
    min(battery_level) AS battery_level_min,
    max(battery_level) AS battery_level_max
FROM {{ source('lake', 'readings') }}
GROUP BY sensor_id, epoch_us(ts) // 3600000000, date
