"""What the Dagster UI shows about a partition's anomalies: summary counts and a plot.

Pure functions: tables in, plain values or PNG bytes out. matplotlib is
imported inside :func:`plot_sensor_day` (Agg backend, no pyplot state), so
the rest of the core does not need it.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import ANOMALY_TYPES, FLEET_ID, SEVERITIES, VALID_RANGE

# One colour per anomaly type (matplotlib's tab10), fixed so that plots compare across days.
TYPE_COLORS = dict(zip(ANOMALY_TYPES, ("#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22",
                                       "#7f7f7f", "#17becf", "#1f77b4", "#2ca02c", "#98df8a", "#c5b0d5")))  # fmt: skip
_PANELS = (("temperature", "temperature (C)"), ("vibration", "vibration (g)"), ("battery_level", "battery (%)"))
_PANEL_OF_METRIC = {"temperature": 0, "vibration": 1, "battery_level": 2, "missing_rate": None, None: None}


def anomaly_counts(anomalies: pa.Table) -> dict[str, dict[str, int]]:
    """Counts by type, by severity and by "type/severity" (keys in schema order, zero counts left out)."""
    types = anomalies.column("anomaly_type").to_pylist()
    sevs = anomalies.column("severity").to_pylist()
    by_type = {t: types.count(t) for t in ANOMALY_TYPES if t in types}
    by_sev = {s: sevs.count(s) for s in SEVERITIES if s in sevs}
    pairs = [f"{t}/{s}" for t, s in zip(types, sevs)]
    by_pair = {p: pairs.count(p) for p in dict.fromkeys(sorted(pairs, key=_pair_key))}
    return {"by_type": by_type, "by_severity": by_sev, "by_type_and_severity": by_pair}


def _pair_key(pair: str) -> tuple[int, int]:
    t, s = pair.split("/")
    return (ANOMALY_TYPES.index(t) if t in ANOMALY_TYPES else len(ANOMALY_TYPES),
            SEVERITIES.index(s) if s in SEVERITIES else len(SEVERITIES))  # fmt: skip


def most_affected_sensors(anomalies: pa.Table, n: int = 5) -> list[tuple[str, int, int]]:
    """The ``n`` sensors with the most critical, then most, anomalies: (sensor_id, critical, total).

    Fleet-wide (systemic) rows are not a sensor's. Ties go to the smaller sensor_id.
    """
    sensors = anomalies.column("sensor_id").to_pylist()
    crit = [s == "critical" for s in anomalies.column("severity").to_pylist()]
    stats: dict[str, list[int]] = {}
    for s, c in zip(sensors, crit):
        if s == FLEET_ID:
            continue
        st = stats.setdefault(s, [0, 0])
        st[0] += int(c)
        st[1] += 1
    ranked = sorted(stats.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    return [(s, c, t) for s, (c, t) in ranked[:n]]


def worst_sensor(anomalies: pa.Table) -> str | None:
    """The most affected sensor (see :func:`most_affected_sensors`), None when no sensor has an anomaly."""
    top = most_affected_sensors(anomalies, 1)
    return top[0][0] if top else None


def _break_gaps(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN after each gap longer than 5 typical steps, so that lines do not bridge outages."""
    if len(t) < 3:
        return t, v
    dt_us = np.diff(t.astype(np.int64))
    gaps = np.flatnonzero(dt_us > 5 * np.median(dt_us))
    if len(gaps) == 0:
        return t, v
    return np.insert(t, gaps + 1, t[gaps]), np.insert(v.astype(float), gaps + 1, np.nan)


def _envelope(t: np.ndarray, v: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 * buckets`` points drawing the same picture: each bucket's min then max.

    A day at 1 Hz is 86,400 points a panel, far more than the plot's pixels;
    matplotlib takes seconds over them. The envelope keeps every spike.
    """
    if len(t) <= 2 * buckets:
        return t, v
    ti = t.astype(np.int64)
    span = int(ti[-1] - ti[0]) + 1
    b = (ti - ti[0]) * buckets // span
    starts = np.r_[0, np.flatnonzero(np.diff(b)) + 1]
    lo, hi = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
    width = max(span // buckets, 2)
    t0 = ti[0] + b[starts] * width
    out_t = np.empty(2 * len(starts), np.int64)
    out_t[0::2], out_t[1::2] = t0, t0 + width // 2
    out_v = np.empty(2 * len(starts), np.float64)
    out_v[0::2], out_v[1::2] = lo, hi
    return out_t.astype(t.dtype), out_v


def plot_sensor_day(readings: pa.Table, anomalies: pa.Table, sensor_id: str) -> bytes:
    """A PNG of one sensor's readings (temperature, vibration, battery) with its anomalies marked.

    Episodes are shaded from start to end in their type's colour on the panel
    of their metric (all panels for metric-less ones, such as silence);
    values outside the valid range (sensor faults) are drawn as markers at
    the panel's edge rather than stretching its scale. Same inputs, same bytes.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    r = readings.filter(pc.equal(readings.column("sensor_id"), sensor_id))
    ts = pc.cast(r.column("ts"), pa.int64()).to_numpy() if r.num_rows else np.zeros(0, np.int64)
    order = np.argsort(ts, kind="stable")
    t = (ts[order].astype("datetime64[us]")) if len(ts) else np.zeros(0, "datetime64[us]")
    a = anomalies.filter(pc.equal(anomalies.column("sensor_id"), sensor_id))

    fig = Figure(figsize=(11, 7), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    for ax, (metric, label) in zip(axes, _PANELS):
        v = (
            np.asarray(pc.cast(r.column(metric), pa.float64()).to_numpy(zero_copy_only=False))[order]
            if metric in r.column_names and r.num_rows
            else np.zeros(0)
        )
        lo, hi = VALID_RANGE[metric]
        with np.errstate(invalid="ignore"):
            ok = (v >= lo) & (v <= hi)
        ax.plot(*_break_gaps(*_envelope(t[ok], v[ok], 600)), lw=0.6, color="#333333", rasterized=True)
        if (~ok & ~np.isnan(v)).any():
            y = np.nanmax(v[ok]) if ok.any() else hi
            ax.plot(t[~ok & ~np.isnan(v)], np.full((~ok & ~np.isnan(v)).sum(), y), "v", color=TYPE_COLORS["sensor_fault"],
                    ms=6, label="outside valid range")  # fmt: skip
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    seen = set()
    span = (t[-1] - t[0]) if len(t) > 1 else np.timedelta64(86_400_000_000, "us")
    starts = pc.cast(a.column("start_ts"), pa.int64()).to_numpy().astype("datetime64[us]") if a.num_rows else []
    ends = pc.cast(a.column("end_ts"), pa.int64()).to_numpy().astype("datetime64[us]") if a.num_rows else []
    for s, e, typ, met in zip(starts, ends, a.column("anomaly_type").to_pylist(), a.column("metric").to_pylist()):
        panel = _PANEL_OF_METRIC.get(met, 0)
        targets = axes if panel is None else [axes[panel]]
        color = TYPE_COLORS.get(typ, "#000000")
        for ax in targets:
            lbl = typ if typ not in seen else None
            if e - s > span / 300:  # wide enough to see as a band
                ax.axvspan(s, e, color=color, alpha=0.25, lw=0, label=lbl)
            else:
                ax.axvline(s, color=color, alpha=0.8, lw=1.2, label=lbl)
            seen.add(typ)
    n = a.num_rows
    axes[0].set_title(f"{sensor_id}: {r.num_rows} readings, {n} anomal{'y' if n == 1 else 'ies'}")
    handles, labels = [], []
    for ax in axes:
        h, lb = ax.get_legend_handles_labels()
        handles += h
        labels += lb
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.autofmt_xdate()
    # fixed margins (tight_layout draws the figure once more to measure it: a third of the plot's time)
    fig.subplots_adjust(left=0.08, right=0.985, top=0.95, bottom=0.17 if handles else 0.12, hspace=0.12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
