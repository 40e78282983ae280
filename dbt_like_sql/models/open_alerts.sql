-- open_alerts: one row per sensor and anomaly type whose latest critical anomaly is still
-- open: not yet followed by a normal period, i.e. an hour with no anomaly of that sensor
-- while it kept reporting.
-- Grain: sensor_id, anomaly_type.  Time column: start_ts.
--
-- The quiet spells after an alert are the gaps between it and the sensor's later
-- anomalies (of any type or severity), and the span from the last of them to the
-- sensor's last_seen. Gaps between anomalies count as reporting time: a sensor that
-- goes quiet raises silent_sensor / high_missing_rate anomalies of its own. Fleet-wide
-- alerts (sensor_id '__fleet__') close when the fleet (any sensor) has been seen an
-- hour after the last fleet-wide anomaly. A sensor never seen in window_stats keeps
-- its alerts open.
{{ config(materialized='table') }}
WITH latest AS (
    SELECT *
    FROM {{ source('lake', 'anomalies') }}
    WHERE severity = 'critical'
    QUALIFY row_number() OVER (
        PARTITION BY sensor_id, anomaly_type ORDER BY end_ts DESC, start_ts DESC, anomaly_id DESC
    ) = 1
),
last_seen AS (
    SELECT sensor_id, max(last_seen) AS last_seen
    FROM {{ ref('sensor_health_daily') }}
    GROUP BY sensor_id
    UNION ALL
    SELECT '__fleet__', max(last_seen)
    FROM {{ ref('sensor_health_daily') }}
),
busy AS (
    -- the alert itself, then every anomaly of the same sensor still going on after it ended
    SELECT anomaly_id AS alert_id, start_ts, end_ts
    FROM latest
    UNION ALL
    SELECT l.anomaly_id, b.start_ts, b.end_ts
    FROM latest AS l
    JOIN {{ source('lake', 'anomalies') }} AS b ON b.sensor_id = l.sensor_id AND b.end_ts > l.end_ts
),
gaps AS (
    SELECT
        alert_id,
        -- quiet time before this busy interval, after everything that started before it
        start_ts - max(end_ts) OVER (
            PARTITION BY alert_id ORDER BY start_ts, end_ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS gap,
        end_ts
    FROM busy
),
quiet AS (
    SELECT alert_id, max(gap) AS longest_gap, max(end_ts) AS busy_until, count(*) - 1 AS n_later_anomalies
    FROM gaps
    GROUP BY alert_id
)
SELECT
    l.sensor_id,
    l.anomaly_type,
    l.anomaly_id,
    l.metric,
    l.start_ts,
    l.end_ts,
    l.value,
    l.threshold,
    l.score,
    l.message,
    l.date,
    s.last_seen,
    q.n_later_anomalies
FROM latest AS l
JOIN quiet AS q ON q.alert_id = l.anomaly_id
LEFT JOIN last_seen AS s ON s.sensor_id = l.sensor_id
WHERE coalesce(q.longest_gap, INTERVAL 0 SECOND) < INTERVAL 1 HOUR
  AND (s.last_seen IS NULL OR s.last_seen - q.busy_until < INTERVAL 1 HOUR)
ORDER BY l.sensor_id, l.anomaly_type
