-- fleet_hourly: one row per UTC hour with data: the whole fleet's aggregates of every metric.
-- Grain: hour.  Time column: hour (partition column: date).
--
-- Rolled up from sensor_hourly: means weighted by readings, minima and maxima over
-- sensors, battery and missing rate as means over sensors; n_sensors counts the
-- sensors that reported in the hour. A view: filter on date to read only those days.
{{ config(materialized='view') }}
SELECT
    hour,
    date,
    count(*) FILTER (WHERE n_readings > 0) AS n_sensors,
    sum(n_readings)::BIGINT AS n_readings,
    sum(temp_mean * n_readings) / sum(n_readings) FILTER (WHERE temp_mean IS NOT NULL) AS temp_mean,
    min(temp_min) AS temp_min,
    max(temp_max) AS temp_max,
    sum(humidity_mean * n_readings) / sum(n_readings) FILTER (WHERE humidity_mean IS NOT NULL) AS humidity_mean,
    sum(pressure_mean * n_readings) / sum(n_readings) FILTER (WHERE pressure_mean IS NOT NULL) AS pressure_mean,
    sum(vibration_mean * n_readings) / sum(n_readings) FILTER (WHERE vibration_mean IS NOT NULL) AS vibration_mean,
    max(vibration_max) AS vibration_max,
    avg(battery_mean) AS battery_mean,
    min(battery_min) AS battery_min,
    avg(missing_rate) AS missing_rate
FROM {{ ref('sensor_hourly') }}
GROUP BY hour, date
