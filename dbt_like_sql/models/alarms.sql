-- alarms: one row per alarm the alert store raised (iot_platform/core/alarms.py), with its
-- lifecycle (active / acknowledged / cleared) and how its notifications were delivered.
-- Grain: alarm_id.  Time column: created_at.
--
-- A view over the history the alert store exports after every pass (lake tables
-- alarm_log and alarm_deliveries): always current, nothing to refresh.
{{ config(materialized='view') }}
WITH d AS (
    SELECT
        alarm_id,
        count(*) AS n_notifications,
        count(*) FILTER (WHERE status = 'sent') AS n_delivered,
        count(*) FILTER (WHERE status IN ('pending', 'sending')) AS n_pending,
        count(*) FILTER (WHERE status = 'uncertain') AS n_uncertain,
        max(sent_at) AS last_delivered_at
    FROM {{ source('lake', 'alarm_deliveries') }}
    GROUP BY alarm_id
)
SELECT
    a.alarm_id,
    a.sensor_id,
    a.alarm_type,
    a.metric,
    a.severity,
    a.status,
    a.first_seen,
    a.last_seen,
    a.value,
    a.score,
    a.message,
    a.created_at,
    a.acked_at,
    a.acked_by,
    a.cleared_at,
    a.clear_reason,
    coalesce(a.cleared_at, a.last_seen) - a.first_seen AS duration,
    coalesce(d.n_notifications, 0) AS n_notifications,
    coalesce(d.n_delivered, 0) AS n_delivered,
    coalesce(d.n_pending, 0) AS n_pending,
    coalesce(d.n_uncertain, 0) AS n_uncertain,
    d.last_delivered_at,
    a.date
FROM {{ source('lake', 'alarm_log') }} AS a
LEFT JOIN d ON d.alarm_id = a.alarm_id
