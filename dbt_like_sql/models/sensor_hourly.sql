-- sensor_hourly: one row per sensor and UTC hour with readings: the window statistics of
-- the hour rolled up (readings, completeness, each metric's mean and extremes).
-- Grain: sensor_id, hour.  Time column: hour (partition column: date).
--
-- A view: filter on date and only those days of window_stats are read. A year of
-- window statistics of 100 sensors is 50 million rows whose eight metric columns
-- take half a minute to decode: too much to rebuild a table from at every refresh.
-- A tile counts in the hour it starts in; with 300 s tiles an hour holds whole tiles,
-- so n_readings, minima and maxima are the hour's exactly (longer windows spill into
-- the next hour). Means are weighted by readings; statistics leave out values outside
-- the sensor's valid range, as window_stats does. sensor_readings_hourly gives the
-- same grain from raw readings. Hours come from integer epoch arithmetic: UTC in any
-- session time zone, and ten times faster than date_trunc() on TIMESTAMPTZ.
{{ config(materialized='view') }}
SELECT
    sensor_id,
    make_timestamptz(epoch_us(window_start) // 3600000000 * 3600000000) AS hour,
    date,
    sum(n_readings)::BIGINT AS n_readings,
    count(*) FILTER (WHERE n_readings > 0) AS n_windows,
    least(coalesce(sum(epoch_us(window_end) - epoch_us(window_start)) FILTER (WHERE n_readings > 0), 0) / 3600e6, 1.0) AS coverage,
    avg(missing_rate) AS missing_rate,
    sum(temp_mean * n_readings) / sum(n_readings) FILTER (WHERE temp_mean IS NOT NULL) AS temp_mean,
    min(temp_min) AS temp_min,
    max(temp_max) AS temp_max,
    sum(humidity_mean * n_readings) / sum(n_readings) FILTER (WHERE humidity_mean IS NOT NULL) AS humidity_mean,
    sum(pressure_mean * n_readings) / sum(n_readings) FILTER (WHERE pressure_mean IS NOT NULL) AS pressure_mean,
    sum(vibration_mean * n_readings) / sum(n_readings) FILTER (WHERE vibration_mean IS NOT NULL) AS vibration_mean,
    max(vibration_max) AS vibration_max,
    avg(battery_level) AS battery_mean,
    min(battery_level) AS battery_min
FROM {{ ref('window_tiles') }}
GROUP BY sensor_id, epoch_us(window_start) // 3600000000, date
