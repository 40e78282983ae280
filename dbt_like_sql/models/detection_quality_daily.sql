-- detection_quality_daily: one row per UTC day and labelled sensor-fault type: how many
-- labelled faults (the simulator's ground truth) the detectors caught.
-- Grain: date, fault_type.  Time column: date (the UTC day of the label's partition).
--
-- A label is caught when an anomaly of a matching type on the same sensor overlaps
-- its [start_ts, end_ts]. Delivery faults (duplicates, out_of_order, clock_skew) are
-- ingestion's to absorb, not the detectors' to find, and are left out. Labels and
-- anomalies are expanded to the UTC days they span (as day numbers since the epoch) and
-- joined per day, which keeps the join an equality join however long the history is.
{{ config(materialized='table') }}
WITH matching (fault_type, anomaly_type) AS (
    VALUES
        ('spike', 'spike'),
        ('sensor_fault', 'sensor_fault'),
        ('drift', 'drift'),
        ('flatline', 'flatline'),
        ('high_vibration', 'high_vibration'),
        ('low_battery', 'low_battery'),
        ('outage', 'silent_sensor'),
        ('outage', 'high_missing_rate')
),
labels AS (
    SELECT *
    FROM {{ source('lake', 'fault_labels') }}
    WHERE fault_type IN (SELECT fault_type FROM matching)
),
label_days AS (
    SELECT l.label_id, l.sensor_id, m.anomaly_type, l.start_ts, l.end_ts,
           unnest(range(epoch_us(l.start_ts) // 86400000000, epoch_us(l.end_ts) // 86400000000 + 1)) AS day
    FROM labels AS l
    JOIN matching AS m ON m.fault_type = l.fault_type
),
anomaly_days AS (
    SELECT sensor_id, anomaly_type, start_ts, end_ts,
           unnest(range(epoch_us(start_ts) // 86400000000, epoch_us(end_ts) // 86400000000 + 1)) AS day
    FROM {{ source('lake', 'anomalies') }}
    WHERE anomaly_type IN (SELECT anomaly_type FROM matching)
),
caught AS (
    SELECT DISTINCT ld.label_id
    FROM label_days AS ld
    JOIN anomaly_days AS ad
      ON ad.sensor_id = ld.sensor_id AND ad.anomaly_type = ld.anomaly_type AND ad.day = ld.day
     AND ad.start_ts <= ld.end_ts AND ad.end_ts >= ld.start_ts
)
SELECT
    l.date,
    l.fault_type,
    count(*) AS n_labels,
    count(c.label_id) AS n_caught,
    count(c.label_id) / count(*) AS recall
FROM labels AS l
LEFT JOIN caught AS c ON c.label_id = l.label_id
GROUP BY l.date, l.fault_type
ORDER BY l.date, l.fault_type
