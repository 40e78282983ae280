-- anomaly_summary_daily: one row per UTC day, anomaly type and severity that occurred:
-- how many anomalies, on how many sensors, for how long, and how strong.
-- Grain: date, anomaly_type, severity.  Time column: date (the UTC day of the partition).
--
-- Combinations with no anomaly have no row (not a zero row).
-- n_sensors counts sensors, not the fleet pseudo-sensor '__fleet__' of systemic anomalies;
-- n_systemic counts the anomalies that belong to a fleet-wide event.
{{ config(materialized='table') }}
SELECT
    date,
    anomaly_type,
    severity,
    count(*) AS n_anomalies,
    count(DISTINCT sensor_id) FILTER (WHERE sensor_id <> '__fleet__') AS n_sensors,
    count(*) FILTER (WHERE systemic_id IS NOT NULL) AS n_systemic,
    sum(epoch(end_ts) - epoch(start_ts)) AS total_duration_s,
    max(score) AS max_score,
    min(start_ts) AS first_start_ts,
    max(end_ts) AS last_end_ts
FROM {{ source('lake', 'anomalies') }}
GROUP BY date, anomaly_type, severity
ORDER BY date, anomaly_type, severity
