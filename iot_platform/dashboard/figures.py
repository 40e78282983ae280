"""Plotly figures and tiles of the dashboard, from Arrow tables (no I/O here)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
from iot_platform.core.calendar import US
from plotly.subplots import make_subplots

METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("temperature", "temperature (°C)"),
    ("humidity", "humidity (%RH)"),
    ("pressure", "pressure (hPa)"),
    ("vibration", "vibration (g)"),
    ("battery_level", "battery (%)"),
)
# window statistics per metric: (mean column, lower band, upper band)
WINDOW_COLUMNS = {
    "temperature": ("temp_mean", "temp_min", "temp_max"),
    "humidity": ("humidity_mean", None, None),
    "pressure": ("pressure_mean", None, None),
    "vibration": ("vibration_mean", None, "vibration_max"),
    "battery_level": ("battery_level", None, None),
}
STATE_COLORS = {"ok": "#2e7d32", "warning": "#f9a825", "critical": "#c62828", "silent": "#6a1b9a", "stale": "#757575"}
SEVERITY_COLORS = {"warning": "rgba(249,168,37,0.25)", "critical": "rgba(198,40,40,0.25)"}
MAX_SPANS = 200  # shaded episode spans drawn per chart (markers are drawn for every episode)


def times(us) -> np.ndarray:
    """µs since the epoch -> numpy datetime64 (UTC), which Plotly draws as dates."""
    return np.asarray(us, dtype="int64").astype("datetime64[us]")


def ts_text(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / US, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))  # a clock a little behind the data's own times
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _bounds(readings: pa.Table, windows: pa.Table, metric: str) -> tuple[float, float] | None:
    """The range of the values drawn on a metric's row (readings and window columns)."""
    vals = []
    if metric in readings.column_names and readings.num_rows:
        vals.append(readings[metric].to_numpy(zero_copy_only=False).astype(float))
    for col in WINDOW_COLUMNS[metric]:
        if col and col in windows.column_names and windows.num_rows:
            vals.append(windows[col].to_numpy(zero_copy_only=False).astype(float))
    v = np.concatenate(vals) if vals else np.array([])
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else None


def _marker_y(e: dict, metric: str, bounds: tuple[float, float] | None) -> float | None:
    """Where an episode's marker goes: at its value, kept within the row's data range (plus a margin)
    so that one 500 °C sensor fault does not flatten the day's curve; the hover text has the value.
    Episodes without a value of this metric go at the top."""
    if bounds is None:
        return e["value"] if e["metric"] == metric else None
    lo, hi = bounds
    pad = max(hi - lo, 1e-9) * 0.15
    if e["metric"] != metric or e["value"] is None:
        return hi + pad
    return min(max(e["value"], lo - pad), hi + pad)


def sensor_figure(sensor: str, readings: pa.Table, windows: pa.Table, episodes: pa.Table, start_us: int, end_us: int) -> go.Figure:
    """Every metric of one sensor over ``[start, end)``: readings, window mean and spread band,
    anomaly episodes as shaded spans and as markers with type, severity and score on hover."""
    rows = [(m, title) for m, title in METRIC_ROWS if m in readings.column_names or WINDOW_COLUMNS[m][0] in windows.column_names]
    rows = rows or list(METRIC_ROWS[:1])  # nothing in the lake yet: one empty chart
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.03, subplot_titles=[t for _, t in rows])
    rt = times(readings["ts"].to_numpy()) if readings.num_rows else None
    wt = times(windows["window_end"].to_numpy()) if windows.num_rows else None
    ep = episodes.to_pylist() if episodes.num_rows else []
    names = {m for m, _ in rows}
    for i, (metric, title) in enumerate(rows, start=1):
        mean_col, lo_col, hi_col = WINDOW_COLUMNS[metric]
        if wt is not None and hi_col is not None:
            lo = windows[lo_col].to_numpy(zero_copy_only=False) if lo_col else windows[mean_col].to_numpy(zero_copy_only=False)
            fig.add_trace(go.Scatter(x=wt, y=lo, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip", name=f"{metric} band low"), row=i, col=1)
            fig.add_trace(go.Scatter(x=wt, y=windows[hi_col].to_numpy(zero_copy_only=False), mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor="rgba(21,101,192,0.15)", name=f"{metric} window spread",
                                     showlegend=False, hoverinfo="skip"), row=i, col=1)  # fmt: skip
        if rt is not None and metric in readings.column_names:
            fig.add_trace(go.Scatter(x=rt, y=readings[metric].to_numpy(zero_copy_only=False), mode="lines", name=metric,
                                       line={"width": 1, "color": "#455a64"}, showlegend=False), row=i, col=1)  # fmt: skip
        if wt is not None and mean_col in windows.column_names:
            fig.add_trace(go.Scatter(x=wt, y=windows[mean_col].to_numpy(zero_copy_only=False), mode="lines",
                                     name=f"{metric} window mean", line={"width": 2, "color": "#1565c0"}, showlegend=False),
                          row=i, col=1)  # fmt: skip
        # episodes of a metric without a chart row (missing_rate, silence: no metric) go on the first row
        mine = [e for e in ep if (e["metric"] if e["metric"] in names else rows[0][0]) == metric]
        for e in mine[:MAX_SPANS]:
            fig.add_vrect(x0=times([e["start_ts"]])[0], x1=times([max(e["end_ts"], e["start_ts"] + US)])[0], row=i, col=1,
                          fillcolor=SEVERITY_COLORS.get(e["severity"], "rgba(0,0,0,0.1)"), line_width=0, layer="below")  # fmt: skip
        if mine:
            bounds = _bounds(readings, windows, metric)
            y = [_marker_y(e, metric, bounds) for e in mine]
            fig.add_trace(go.Scatter(
                x=times([e["start_ts"] for e in mine]), y=y, mode="markers", name="anomalies",
                marker={"symbol": "x", "size": 10, "color": ["#c62828" if e["severity"] == "critical" else "#f9a825" for e in mine]},
                text=[f"{e['anomaly_type']} ({e['severity']}), score {e['score']:.2f}<br>{e['message']}" if e["score"] is not None
                      else f"{e['anomaly_type']} ({e['severity']})<br>{e['message']}" for e in mine],
                hovertemplate="%{text}<extra></extra>", showlegend=False,
            ), row=i, col=1)  # fmt: skip
    fig.update_xaxes(range=[times([start_us])[0], times([end_us])[0]])
    fig.update_layout(
        height=170 * len(rows) + 60, margin={"l": 60, "r": 20, "t": 40, "b": 30}, title=f"{sensor}",
        uirevision=sensor, template="plotly_white", hovermode="closest",
    )  # fmt: skip
    return fig
