"""Arrow schemas of the alarm history the alert store exports to the lake (queryable with SQL)."""

from __future__ import annotations

import pyarrow as pa

# one row per alarm, its latest state; partition: the UTC day it was created
ALARM_LOG = pa.schema(
    [
        pa.field("alarm_id", pa.string(), nullable=False),
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("alarm_type", pa.string(), nullable=False),
        pa.field("metric", pa.string()),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("first_seen", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("last_seen", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("anomaly_ids", pa.string()),  # JSON list of the episodes the alarm covers
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("updated_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("acked_at", pa.timestamp("us", tz="UTC")),
        pa.field("acked_by", pa.string()),
        pa.field("cleared_at", pa.timestamp("us", tz="UTC")),
        pa.field("clear_reason", pa.string()),
        pa.field("n_repeats", pa.int64()),
    ]
)
# one row per notification and channel, with its delivery state
ALARM_DELIVERIES = pa.schema(
    [
        pa.field("notification_id", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("alarm_id", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("attempts", pa.int64(), nullable=False),
        pa.field("sent_at", pa.timestamp("us", tz="UTC")),
        pa.field("last_error", pa.string()),
    ]
)
ALARM_TABLES = {"alarm_log": ALARM_LOG, "alarm_deliveries": ALARM_DELIVERIES}
