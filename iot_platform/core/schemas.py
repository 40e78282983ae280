"""The tables of the platform: Arrow schemas, metric names and value ranges.

Every table written to the lake is cast to one of these schemas first, so the
files of a table agree whichever path (backfill, micro-batch, import, capture)
wrote them.
"""

from __future__ import annotations

import pyarrow as pa

TS_TYPE = pa.timestamp("us", tz="UTC")

METRICS: tuple[str, ...] = ("temperature", "humidity", "pressure", "vibration", "battery_level")

# What a working sensor can report. A value outside its range is physically
# impossible for the instrument (a DS18B20 answering -127 C, a DHT22 reading
# 255 %RH): a broken sensor, kept in `readings` and reported by the
# `sensor_fault` detector, never treated as a statistical outlier.
VALID_RANGE: dict[str, tuple[float, float]] = {
    "temperature": (-40.0, 85.0),
    "humidity": (0.0, 100.0),
    "pressure": (300.0, 1100.0),
    "vibration": (0.0, 50.0),
    "battery_level": (0.0, 100.0),
}

# What a reading may carry at all. Ingestion rejects (quarantines) values
# beyond these limits, non-finite values and non-numbers: they cannot be a
# measurement of anything (below absolute zero, a negative vibration
# magnitude, a six-digit humidity) and are parse or transmission garbage.
INGEST_LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (-273.15, 10_000.0),
    "humidity": (-1_000.0, 1_000.0),
    "pressure": (0.0, 100_000.0),
    "vibration": (0.0, 10_000.0),
    "battery_level": (-1_000.0, 1_000.0),
}

READINGS = pa.schema(
    [
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        *(pa.field(m, pa.float64()) for m in METRICS),
        # Provenance: where the reading came from ("simulator", "serial:/dev/ttyACM0",
        # "import:plant.csv") and the device's sequence number where it sent one.
        pa.field("source", pa.string()),
        pa.field("seq", pa.int64()),
    ]
)
READINGS_KEY = ("sensor_id", "ts")

# Files in the landing zone ($IOT_DATA_DIR/landing/) share the readings schema;
# `received_at` is when the host got the reading (arrival time, not event time).
LANDING = READINGS.append(pa.field("received_at", TS_TYPE))

# Rows refused by ingestion, with the reason, kept so that nothing is lost.
QUARANTINE = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("received_at", TS_TYPE),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)

FAULT_TYPES: tuple[str, ...] = (
    # sensor faults, for the detectors to find
    "spike",
    "sensor_fault",
    "drift",
    "flatline",
    "high_vibration",
    "low_battery",
    "outage",
    # delivery faults, for ingestion to absorb
    "duplicates",
    "out_of_order",
    "clock_skew",
)

FAULT_LABELS = pa.schema(
    [
        pa.field("label_id", pa.string(), nullable=False),
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("fault_type", pa.string(), nullable=False),
        pa.field("metric", pa.string()),
        pa.field("start_ts", TS_TYPE, nullable=False),
        pa.field("end_ts", TS_TYPE, nullable=False),
        # size of the fault: spike offset (C), drift total (C), stuck value,
        # vibration level (g), battery level at start (%), skew (s), rows affected
        pa.field("magnitude", pa.float64()),
        pa.field("n_readings", pa.int64()),
    ]
)

WINDOW_STATS = pa.schema(
    [
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("window_start", TS_TYPE, nullable=False),
        pa.field("window_end", TS_TYPE, nullable=False),
        pa.field("n_readings", pa.int64(), nullable=False),
        pa.field("temp_mean", pa.float64()),
        pa.field("temp_std", pa.float64()),
        pa.field("temp_min", pa.float64()),
        pa.field("temp_max", pa.float64()),
        pa.field("humidity_mean", pa.float64()),
        pa.field("pressure_mean", pa.float64()),
        pa.field("vibration_mean", pa.float64()),
        pa.field("vibration_max", pa.float64()),
        pa.field("battery_level", pa.float64()),
        pa.field("missing_rate", pa.float64()),
    ]
)

ANOMALY_TYPES: tuple[str, ...] = (
    "spike",
    "sensor_fault",
    "drift",
    "flatline",
    "high_vibration",
    "low_battery",
    "high_missing_rate",
    "silent_sensor",
    "systemic",
    "level_shift",
    "multivariate",
    "variance_change",
)
SEVERITIES: tuple[str, ...] = ("warning", "critical")
FLEET_ID = "__fleet__"  # sensor_id of fleet-wide (systemic) anomalies

ANOMALIES = pa.schema(
    [
        pa.field("anomaly_id", pa.string(), nullable=False),
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("anomaly_type", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("metric", pa.string()),
        pa.field("start_ts", TS_TYPE, nullable=False),
        pa.field("end_ts", TS_TYPE, nullable=False),
        pa.field("value", pa.float64()),  # the peak value of the episode
        pa.field("threshold", pa.float64()),
        pa.field("score", pa.float64()),  # higher means more anomalous
        pa.field("n_points", pa.int64()),  # readings or windows merged into the episode
        pa.field("systemic_id", pa.string()),  # the fleet-wide anomaly this one belongs to
        pa.field("message", pa.string()),
    ]
)

# Rows that ingestion refused, with the reason: queryable like any lake table.
REJECTED_READINGS = READINGS.append(pa.field("reason", pa.string(), nullable=False))

TABLES: dict[str, pa.Schema] = {
    "readings": READINGS,
    "fault_labels": FAULT_LABELS,
    "window_stats": WINDOW_STATS,
    "anomalies": ANOMALIES,
    # landing files after ingestion, split by event day: the durable raw layer
    # that a backfill of `readings` re-reads, so a rebuilt day loses nothing
    "raw_readings": LANDING,
    "rejected_readings": REJECTED_READINGS,
}


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, in order, cast to its types.

    Missing nullable columns are added as nulls, so a source that sends a
    subset of the metrics still produces a well-formed table.
    """
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"column {field.name!r} is required by the schema but missing")
    return pa.Table.from_arrays(columns, schema=schema)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
