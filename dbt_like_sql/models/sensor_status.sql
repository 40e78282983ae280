-- sensor_status: one row per sensor: where it stands at the end of the data (its latest
-- day in sensor_health_daily), with its open alerts and the last week's anomalies.
-- Grain: sensor_id.  Time column: last_seen.
--
-- "The last week" is the 7 days ending on the fleet's latest day, not on today, so a
-- replayed or backfilled history reads the same as it did live. status: 'alert' with
-- an open critical alert, else 'silent' when the sensor was last seen more than an hour
-- before the fleet's last reading, else 'ok'. A view over two tables: always current
-- with them, and cheap.
{{ config(materialized='view') }}
WITH latest AS (
    SELECT *
    FROM {{ ref('sensor_health_daily') }}
    QUALIFY row_number() OVER (PARTITION BY sensor_id ORDER BY date DESC) = 1
),
fleet AS (
    SELECT max(date) AS fleet_date, max(last_seen) AS fleet_last_seen
    FROM {{ ref('sensor_health_daily') }}
),
last_week AS (
    SELECT h.sensor_id, sum(h.n_anomalies)::BIGINT AS n_anomalies_7d, sum(h.n_critical)::BIGINT AS n_critical_7d
    FROM {{ ref('sensor_health_daily') }} AS h, fleet AS f
    WHERE h.date > f.fleet_date - 7
    GROUP BY h.sensor_id
),
alerts AS (
    SELECT sensor_id, count(*) AS n_open_alerts, list_sort(list(anomaly_type)) AS open_alert_types
    FROM {{ ref('open_alerts') }}
    GROUP BY sensor_id
)
SELECT
    l.sensor_id,
    CASE
        WHEN a.n_open_alerts > 0 THEN 'alert'
        WHEN l.last_seen IS NULL OR l.last_seen < f.fleet_last_seen - INTERVAL 1 HOUR THEN 'silent'
        ELSE 'ok'
    END AS status,
    l.date AS last_day,
    l.last_seen,
    l.battery_min,
    l.missing_rate,
    l.coverage,
    coalesce(w.n_anomalies_7d, 0) AS n_anomalies_7d,
    coalesce(w.n_critical_7d, 0) AS n_critical_7d,
    coalesce(a.n_open_alerts, 0) AS n_open_alerts,
    coalesce(a.open_alert_types, []::VARCHAR[]) AS open_alert_types
FROM latest AS l
CROSS JOIN fleet AS f
LEFT JOIN last_week AS w ON w.sensor_id = l.sensor_id
LEFT JOIN alerts AS a ON a.sensor_id = l.sensor_id
ORDER BY l.sensor_id
