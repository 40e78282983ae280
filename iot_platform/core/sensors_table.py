"""The ``sensors`` table: every sensor the platform knows, with what detection assumes about each metric.

One row per (sensor, metric): the registry's entry for the sensor (an exact id,
a simulated sensor, a ``sensors.yaml`` pattern) or, for a sensor no entry
describes, the data-driven defaults: the metrics its data has, no unit, no
range, no alarm, no group, the sample interval estimated from its windows.
Pure: the caller passes the registry and what the lake has observed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from iot_platform.core.registry import SensorRegistry
from iot_platform.core.schemas import METRICS, TS_TYPE

SENSORS = pa.schema(
    [
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("metric", pa.string()),  # NULL: a registered sensor with no metric known yet
        pa.field("source", pa.string(), nullable=False),  # simulated | registry | default (data-driven)
        pa.field("entry", pa.string()),  # the sensors.yaml id or pattern that matched (registry only)
        pa.field("unit", pa.string()),
        pa.field("valid_low", pa.float64()),  # outside [valid_low, valid_high]: sensor_fault
        pa.field("valid_high", pa.float64()),
        pa.field("warning_above", pa.float64()),
        pa.field("critical_above", pa.float64()),
        pa.field("warning_below", pa.float64()),
        pa.field("critical_below", pa.float64()),
        pa.field("floor", pa.float64()),  # least spike scale, in the unit
        pa.field("drift", pa.bool_(), nullable=False),  # its window means are followed for a slow shift
        pa.field("interval_s", pa.float64()),  # expected sample interval
        pa.field("interval_from", pa.string()),  # registry | data (estimated from its windows) | NULL (unknown)
        pa.field("group", pa.string()),  # co-located sensors (systemic alerts); NULL: none
        pa.field("sensitivity", pa.float64(), nullable=False),
        pa.field("multivariate", pa.bool_()),  # NULL: the data decides (correlation)
        pa.field("observed", pa.bool_(), nullable=False),  # the lake has windows of this metric
        pa.field("first_seen", TS_TYPE),  # first and last window_end of the sensor in the lake
        pa.field("last_seen", TS_TYPE),
    ]
)

# what the lake tells about each sensor: the metrics it reported and its estimated interval
OBSERVED = pa.schema(
    [
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("metrics", pa.list_(pa.string())),
        pa.field("interval_s", pa.float64()),
        pa.field("first_seen", TS_TYPE),
        pa.field("last_seen", TS_TYPE),
    ]
)


def _exact_ids(registry: SensorRegistry) -> list[str]:
    return [s.pattern for s in registry.sensors if not any(c in s.pattern for c in "*?[")]


def sensors_table(registry: SensorRegistry, observed: pa.Table | None = None) -> pa.Table:
    """SENSORS rows, sorted by (sensor_id, metric): the observed sensors and the registry's exact ids.

    ``observed``: OBSERVED rows (one per sensor; None: nothing observed yet).
    """
    seen: dict[str, dict] = {}
    if observed is not None:
        for r in observed.select(OBSERVED.names).to_pylist():
            seen[r["sensor_id"]] = r
    rows = []
    for sid in sorted(set(seen) | set(_exact_ids(registry))):
        spec = registry.spec(sid)
        obs = seen.get(sid, {})
        had = set(obs.get("metrics") or [])
        if spec.simulated:
            source = "simulated"
        elif spec is registry.unknown:
            source = "default"
        else:
            source = "registry"
        metrics = [m for m, _ in spec.metrics] if spec.metrics is not None else [m for m in METRICS if m in had]
        interval, interval_from = spec.interval_s, "registry"
        if interval is None:
            interval = obs.get("interval_s")
            interval_from = "data" if interval is not None else None
        base = dict(
            sensor_id=sid, source=source, entry=spec.pattern if source == "registry" else None,
            interval_s=interval, interval_from=interval_from, group=spec.group, sensitivity=float(spec.sensitivity),
            multivariate=spec.multivariate, first_seen=obs.get("first_seen"), last_seen=obs.get("last_seen"),
        )  # fmt: skip
        for m in metrics or [None]:
            ms = spec.metric(m) if m is not None else None
            lo, hi = (ms.valid_range or (None, None)) if ms is not None else (None, None)
            rows.append(
                dict(
                    base, metric=m, unit=ms and ms.unit, valid_low=lo, valid_high=hi,
                    warning_above=ms and ms.warning_above, critical_above=ms and ms.critical_above,
                    warning_below=ms and ms.warning_below, critical_below=ms and ms.critical_below,
                    floor=ms and ms.floor, drift=bool(ms.drift) if ms is not None else False, observed=m in had,
                )  # fmt: skip
            )
    if not rows:
        return SENSORS.empty_table()
    return pa.Table.from_pylist(rows, schema=SENSORS)


def observed_from_window_stats(stats: pa.Table) -> pa.Table:
    """OBSERVED from per-sensor aggregates of window_stats (columns sensor_id, first_seen, last_seen,
    interval_us: the median of (window_end - window_start) / n_readings over complete windows, and one
    boolean ``has_<metric>`` per metric): the interval rounded as the windows engine rounds it."""
    from iot_platform.core.windows import round_interval_us

    n = stats.num_rows
    has = {m: stats.column(f"has_{m}").to_pylist() for m in METRICS}
    metrics = [[m for m in METRICS if has[m][i]] for i in range(n)]  # per sensor, not per reading
    iv = np.asarray(stats.column("interval_us").to_numpy(zero_copy_only=False), dtype=np.float64) if n else np.zeros(0)
    interval = [None if not np.isfinite(v) else round_interval_us(float(v)) / 1e6 for v in iv]
    return pa.Table.from_arrays(
        [stats.column("sensor_id"), pa.array(metrics, pa.list_(pa.string())), pa.array(interval, pa.float64()),
         stats.column("first_seen").cast(TS_TYPE), stats.column("last_seen").cast(TS_TYPE)],
        schema=OBSERVED,
    )  # fmt: skip
