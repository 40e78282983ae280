"""Detection quality: anomalies scored against the simulator's ground truth (``fault_labels``).

Which anomaly types answer which fault types is :data:`FAULT_TO_ANOMALY`. An
anomaly matches a label when it is on the same sensor, of an answering type,
and its ``[start_ts, end_ts]`` meets ``[label start, label end + tolerance)``:
the tolerance covers alerts from windows, which end after the readings they
hold (a window of 300 s ending 300 s after the fault is still about it). Faults
seen reading by reading (spikes, sensor faults) get no tolerance: their
alerts carry the readings' own times.

Per fault type:

* events: labels overlapping the scored period ``[start, end)``; detected:
  those matched by at least one anomaly (starting in the period or after
  it, when the caller passes later anomalies: a drift that begins at 23:30 on
  the last day shows the next morning); recall = detected / events;
* alerts: anomalies of the answering types starting in the period; true
  alerts: those matching a label of that fault type; precision = true / alerts;
* delay: for each detected event, first matching anomaly's ``start_ts`` minus
  the event's start (or the period's start, for events that began before it),
  never negative; the median over detected events.

False alerts per sensor-day on fault-free sensors: anomalies starting on a
(sensor, day) that has no label of a scored fault type (nor one ending within
the tolerance before the day), divided by the number of such sensor-days.
Systemic (fleet-wide) anomalies are not per-sensor alerts and are left out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import FLEET_ID
from iot_platform.core.windows import DAY_US, US, to_us

FAULT_TO_ANOMALY: dict[str, tuple[str, ...]] = {
    "spike": ("spike",),
    "sensor_fault": ("sensor_fault",),
    "flatline": ("flatline",),
    "high_vibration": ("high_vibration",),
    "low_battery": ("low_battery",),
    "outage": ("high_missing_rate", "silent_sensor"),
    "drift": ("drift",),
}
ANOMALY_TO_FAULT: dict[str, str] = {a: f for f, types in FAULT_TO_ANOMALY.items() for a in types}
READING_FAULTS = ("spike", "sensor_fault")  # detected per reading: matched without tolerance

QUALITY = pa.schema(
    [
        pa.field("fault_type", pa.string(), nullable=False),
        pa.field("events", pa.int64(), nullable=False),
        pa.field("detected", pa.int64(), nullable=False),
        pa.field("recall", pa.float64()),
        pa.field("alerts", pa.int64(), nullable=False),
        pa.field("true_alerts", pa.int64(), nullable=False),
        pa.field("precision", pa.float64()),
        pa.field("median_delay_s", pa.float64()),
    ]
)


@dataclasses.dataclass(frozen=True)
class ScoringParams:
    """tolerance_s: how long after a label's end a window's alert still belongs to it (at least one window length)."""

    tolerance_s: float = 600.0

    def __post_init__(self) -> None:
        v = self.tolerance_s
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise ValueError(f"ScoringParams.tolerance_s={v!r} is invalid; expected a number of seconds >= 0")


def _frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame({c: table.column(c).to_numpy(zero_copy_only=False) for c in columns})
    for c in columns:
        if c.endswith("_ts"):
            df[c] = pc.cast(table.column(c), pa.int64()).to_numpy()
    return df


def _labels(labels: pa.Table, start: int, end: int) -> pd.DataFrame:
    df = _frame(labels, ["label_id", "sensor_id", "fault_type", "start_ts", "end_ts"])
    df = df[df.fault_type.isin(list(FAULT_TO_ANOMALY)) & (df.start_ts < end) & (df.end_ts > start)]
    return df.drop_duplicates("label_id").reset_index(drop=True)


def _anomalies(anomalies: pa.Table, start: int, end: int | None) -> pd.DataFrame:
    df = _frame(anomalies, ["anomaly_id", "sensor_id", "anomaly_type", "start_ts", "end_ts"])
    keep = (df.sensor_id != FLEET_ID) & (df.start_ts >= start)
    if end is not None:
        keep &= df.start_ts < end
    return df[keep].reset_index(drop=True)


def match(anomalies: pa.Table, labels: pa.Table, *, start: dt.datetime | int, end: dt.datetime | int,
          params: ScoringParams = ScoringParams()) -> pd.DataFrame:  # fmt: skip
    """Every (anomaly, label) pair that matches: anomaly_id, label_id, fault_type, delay_s.

    Labels overlapping ``[start, end)``; anomalies starting at or after ``start``
    (also after ``end``: an event near the end of the period may be detected
    a little later, if the caller passes the anomalies of the following hours).
    """
    a_us, b_us = to_us(start, "start"), to_us(end, "end")
    an, lab = _anomalies(anomalies, a_us, None), _labels(labels, a_us, b_us)
    an["fault_type"] = an.anomaly_type.map(ANOMALY_TO_FAULT)
    pairs = an.dropna(subset=["fault_type"]).merge(lab, on=["sensor_id", "fault_type"], suffixes=("", "_label"))
    tol = np.where(pairs.fault_type.isin(READING_FAULTS), 0, round(params.tolerance_s * US))
    hit = (pairs.start_ts < pairs.end_ts_label + tol) & (pairs.end_ts >= pairs.start_ts_label)
    pairs = pairs[hit]
    delay = (pairs.start_ts - np.maximum(pairs.start_ts_label, a_us)).clip(lower=0) / US
    return pd.DataFrame(
        {"anomaly_id": pairs.anomaly_id, "label_id": pairs.label_id, "fault_type": pairs.fault_type, "delay_s": delay}
    ).reset_index(drop=True)


def score_detection(
    anomalies: pa.Table,
    labels: pa.Table,
    *,
    start: dt.datetime | int,
    end: dt.datetime | int,
    params: ScoringParams = ScoringParams(),
) -> pa.Table:
    """QUALITY rows, one per fault type of :data:`FAULT_TO_ANOMALY` (in that order).

    ``anomalies``: schemas.ANOMALIES; ``labels``: schemas.FAULT_LABELS (labels
    repeated across days are counted once, by label_id). Recall and precision
    are null when there is nothing to divide by.
    """
    a_us, b_us = to_us(start, "start"), to_us(end, "end")
    an, lab = _anomalies(anomalies, a_us, b_us), _labels(labels, a_us, b_us)
    pairs = match(anomalies, labels, start=a_us, end=b_us, params=params)
    rows = []
    for fault, types in FAULT_TO_ANOMALY.items():
        ev = lab[lab.fault_type == fault]
        p = pairs[pairs.fault_type == fault]
        first_delay = p.groupby("label_id").delay_s.min()
        alerts = an[an.anomaly_type.isin(types)]
        true = alerts.anomaly_id.isin(p.anomaly_id).sum()
        rows.append(
            {
                "fault_type": fault,
                "events": len(ev),
                "detected": len(first_delay),
                "recall": len(first_delay) / len(ev) if len(ev) else None,
                "alerts": len(alerts),
                "true_alerts": int(true),
                "precision": true / len(alerts) if len(alerts) else None,
                "median_delay_s": float(first_delay.median()) if len(first_delay) else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=QUALITY)


def false_alerts_per_sensor_day(
    anomalies: pa.Table,
    labels: pa.Table,
    *,
    sensor_ids: list[str],
    start: dt.datetime | int,
    end: dt.datetime | int,
    params: ScoringParams = ScoringParams(),
) -> tuple[int, int, float | None]:
    """(alerts, fault-free sensor-days, alerts per fault-free sensor-day) over whole days of ``[start, end)``."""
    a_us, b_us = to_us(start, "start"), to_us(end, "end")
    days = range(a_us // DAY_US, -(-b_us // DAY_US))
    lab = _labels(labels, a_us - round(params.tolerance_s * US), b_us)
    tol = round(params.tolerance_s * US)
    busy = set()
    for r in lab.itertuples():
        first = max(r.start_ts // DAY_US, days.start)
        last = min((r.end_ts + tol - 1) // DAY_US, days.stop - 1)
        busy.update((r.sensor_id, d) for d in range(first, last + 1))
    free = {(s, d) for s in sensor_ids for d in days} - busy
    an = _anomalies(anomalies, a_us, b_us)
    n = sum((s, t // DAY_US) in free for s, t in zip(an.sensor_id, an.start_ts))
    return int(n), len(free), (n / len(free) if free else None)


def quality_markdown(table: pa.Table) -> str:
    """The QUALITY table as markdown (for benchmarks and the README)."""

    def f(v, nd=3):
        return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    lines = [
        "| fault type | events | detected | recall | alerts | true alerts | precision | median delay (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.to_pylist():
        lines.append(
            f"| {r['fault_type']} | {r['events']} | {r['detected']} | {f(r['recall'])} | {r['alerts']} | "
            f"{r['true_alerts']} | {f(r['precision'])} | {f(r['median_delay_s'], 0)} |"
        )
    return "\n".join(lines)
