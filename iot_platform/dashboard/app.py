"""The Dash app: fleet overview, sensor view, freshness and capture health, refreshed live.

Layout, top to bottom:

* a freshness bar: newest reading and its age, last micro-batch, how far detection ran,
  open alarms; and one line per running capture (lines/s, buffer use, drop rate, rejects);
* the fleet: one tile per sensor (state, last temperature, age of the last reading, open
  anomalies), filtered by group and state, 100 tiles a page; clicking a tile opens it below;
* the sensor: every metric over the chosen span (15 min .. 7 days) ending now, or ending at
  the end of a day picked in the calendar.

A ``dcc.Interval`` re-runs the callbacks every ``refresh`` seconds: the page is never
reloaded, the chart keeps its zoom (``uirevision``).
"""

from __future__ import annotations

import datetime as dt
import math
import time
import urllib.parse
from pathlib import Path

import dash
import pyarrow as pa
import pyarrow.compute as pc
from dash import Input, Output, State, dcc, html

from iot_platform.core.alert_config import sensor_groups
from iot_platform.core.fleet_state import STATES, StateParams, classify
from iot_platform.dashboard.figures import STATE_COLORS, age_text, sensor_figure, ts_text
from iot_platform.io.dashboard_data import DashboardData
from iot_platform.core.calendar import US

PAGE_SIZE = 100
MAX_OPTIONS = 50  # sensors listed in the sensor dropdown (type to search the others)
SPANS = {"15 min": 900, "1 h": 3600, "6 h": 6 * 3600, "24 h": 86_400, "7 days": 7 * 86_400}
DEFAULT_SPAN = "1 h"


def _now_us() -> int:
    return time.time_ns() // 1000


def _tile(row: dict) -> dcc.Link:
    """One sensor's tile: one component whose text is the lines (``white-space: pre-line``; the
    first line, the sensor, is bold by CSS). The renderer's cost grows with the number of
    components, and a page has 100 tiles: one component each paints 1,000 sensors' first page
    about twice as fast as a tile of eight."""
    temp = row.get("temperature")
    text = "\n".join([
        row["sensor_id"],
        row["state"],
        f"{temp:.2f} °C" if temp is not None and math.isfinite(temp) else "-",
        f"last reading {age_text(row['age_s'])} ago",
        f"{row['n_open']} open anomal{'y' if row['n_open'] == 1 else 'ies'}",
    ])  # fmt: skip
    # a link, not a click handler: the tiles are re-rendered at every refresh, a link survives that;
    # dcc.Link changes the URL without reloading the page
    return dcc.Link(text, href=f"?sensor={row['sensor_id']}", id=f"tile-{row['sensor_id']}", className=f"tile state-{row['state']}")


# the tiles' look, one rule per state (a stylesheet instead of a style per tile: fewer props to render)
CSS = "\n".join(
    [".tile{display:block;border:2px solid;border-radius:6px;padding:6px;width:150px;background:#fff;font-size:12px;"
     "white-space:pre-line;text-decoration:none;color:inherit}", ".tile::first-line{font-weight:bold}"]
    + [f".state-{s}{{border-color:{c}}}" for s, c in STATE_COLORS.items()]
)  # fmt: skip


def fleet_table(data: DashboardData, now_us: int, params: StateParams) -> pa.Table:
    return classify(data.last_readings(), data.recent_episodes(), now_us, params)


def create_app(root: str | Path, *, refresh_s: float = 5.0, groups: tuple = (), params: StateParams = StateParams(),
               clock=None) -> dash.Dash:  # fmt: skip
    """The app over the data root ``root``; ``groups`` are the alert configuration's sensor groups;
    ``clock`` (µs, default the wall clock) lets screenshots and tests show a historical day as live."""
    clock = clock or _now_us
    data = DashboardData(root)
    # assets/ holds plotly.js's "basic" bundle (scatter, bar, pie; 1.2 MB, MIT, from npm's
    # plotly.js-basic-dist-min at the version the plotly package ships): dcc.Graph uses a
    # window.Plotly already on the page instead of fetching the full 4.8 MB bundle, which took
    # most of the first paint. Every chart here is a scatter trace.
    app = dash.Dash(__name__, title="iot-platform dashboard", update_title=None)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    first = fleet_table(data, clock(), params)
    sensors = first["sensor_id"].to_pylist()
    app.layout = html.Div(
        style={"fontFamily": "sans-serif", "margin": "12px", "background": "#fafafa"},
        children=[
            dcc.Location(id="url", refresh=False),
            dcc.Interval(id="tick", interval=int(refresh_s * 1000), n_intervals=0),
            html.H2("iot-platform: the fleet now", style={"margin": "4px 0"}),
            html.Div(id="freshness", style={"fontSize": "13px", "marginBottom": "4px"}),
            html.Div(id="captures", style={"fontSize": "13px", "marginBottom": "4px"}),
            html.Div(id="alarms", style={"fontSize": "13px", "marginBottom": "8px"}),
            html.Div(style={"display": "flex", "gap": "12px", "alignItems": "center", "flexWrap": "wrap"}, children=[
                html.Label("group"),
                dcc.Dropdown(id="group", options=[], value=None, placeholder="all groups", style={"width": "200px"}),
                html.Label("state"),
                dcc.Checklist(id="states", options=[{"label": s, "value": s} for s in STATES], value=list(STATES), inline=True),
                html.Label("page"),
                dcc.Input(id="page", type="number", min=1, step=1, value=1, style={"width": "60px"}),
                html.Span(id="page-info"),
            ]),  # fmt: skip
            html.Div(id="tiles", style={"display": "flex", "flexWrap": "wrap", "gap": "6px", "margin": "8px 0"}),
            html.Hr(),
            html.Div(style={"display": "flex", "gap": "12px", "alignItems": "center", "flexWrap": "wrap"}, children=[
                html.Label("sensor"),
                dcc.Dropdown(id="sensor", options=sensors[:MAX_OPTIONS], value=sensors[0] if sensors else None, clearable=False, style={"width": "220px"}),
                html.Label("span"),
                dcc.RadioItems(id="span", options=list(SPANS), value=DEFAULT_SPAN, inline=True),
                html.Label("day"),
                dcc.DatePickerSingle(id="day", date=None, clearable=True, placeholder="live", display_format="YYYY-MM-DD"),
            ]),  # fmt: skip
            dcc.Store(id="day-store", data=None),
            dcc.Graph(id="chart", config={"displaylogo": False}),
        ],
    )

    @app.callback(
        Output("tiles", "children"), Output("page-info", "children"), Output("freshness", "children"),
        Output("captures", "children"), Output("alarms", "children"), Output("group", "options"),
        Input("tick", "n_intervals"), Input("group", "value"), Input("states", "value"), Input("page", "value"),
        State("group", "options"),
    )  # fmt: skip
    def update_fleet(_n, group, states, page, group_options):
        now = clock()
        fleet = fleet_table(data, now, params)
        ids = fleet["sensor_id"].to_pylist()
        member = {s: sensor_groups(s, groups) for s in ids}
        all_groups = sorted({g for gs in member.values() for g in gs})
        keep = pc.is_in(fleet["state"], pa.array(states or [], pa.string()))
        if group:
            keep = pc.and_(keep, pa.array([group in member[s] for s in ids]))
        shown = fleet.filter(keep)
        pages = max(1, math.ceil(shown.num_rows / PAGE_SIZE))
        p = min(max(int(page or 1), 1), pages)
        rows = shown.slice((p - 1) * PAGE_SIZE, PAGE_SIZE).to_pylist()
        counts = {s: 0 for s in STATES}
        for s in fleet["state"].to_pylist():
            counts[s] += 1
        info = f"page {p} of {pages}: {shown.num_rows} of {fleet.num_rows} sensors (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        newest = max(fleet["last_ts"].to_pylist(), default=None)
        f = data.freshness(newest)
        fresh = [
            html.Span(f"newest reading {ts_text(newest)} ({age_text((now - newest) / US) if newest else '-'} ago)", id="newest"),
            html.Span(" · last micro-batch " + (f"{ts_text(f.last_batch_us)} ({age_text((now - f.last_batch_us) / US)} ago, #{f.batches})"
                                                if f.last_batch_us else "none yet")),  # fmt: skip
            html.Span(f" · detection up to {ts_text(f.detection_until_us)}"),
            html.Span(" · open alarms " + ("-" if f.open_alarms is None else str(f.open_alarms))),
        ]
        caps = []
        for c in data.capture_health():
            iv = c.get("interval", {})
            age = time.time() - c.get("written_at", 0)
            caps.append(html.Div(
                f"capture {c.get('stream')} ({c.get('port')}): {iv.get('lines_per_s', 0):.1f} lines/s, buffer "
                f"{100 * iv.get('utilization', 0):.1f}% (peak {100 * iv.get('peak_utilization', 0):.1f}%), drop rate "
                f"{100 * iv.get('drop_rate', 0):.2f}%, rejects {iv.get('rejected', 0)} (total {c.get('totals', {}).get('rejected', 0)}); "
                f"updated {age_text(age)} ago", className="capture",
                style={"color": "#c62828" if iv.get("drop_rate", 0) > 0 or age > 120 else "inherit"},
            ))  # fmt: skip
        # options only when they change: a new options list makes the dropdown re-render
        alarms = [
            html.Div(f"{a['severity']} {a['alarm_type']} on {a['sensor_id']}{' (' + a['metric'] + ')' if a['metric'] else ''} "
                     f"since {ts_text(a['first_seen_us'])}, {a['status']}: {a['message']}  [{a['alarm_id']}]",
                     className=f"alarm alarm-{a['severity']}", style={"color": "#c62828" if a["severity"] == "critical" else "#8d6e00"})
            for a in data.open_alarm_list()
        ]  # fmt: skip
        return [_tile(r) for r in rows], info, fresh, caps, alarms, all_groups if all_groups != group_options else dash.no_update

    @app.callback(Output("sensor", "options"), Input("sensor", "search_value"), State("sensor", "value"))
    def sensor_options(search, current):
        # at most MAX_OPTIONS, matching what is typed: a dropdown of 1,000 entries costs the first paint ~0.7 s
        ids = data.last_readings()["sensor_id"].to_pylist()
        found = [s for s in ids if (search or "").lower() in s.lower()][:MAX_OPTIONS]
        return found if current is None or current in found else [current, *found]

    @app.callback(Output("sensor", "value"), Input("url", "search"), prevent_initial_call=True)
    def pick_sensor(search):
        picked = urllib.parse.parse_qs((search or "").lstrip("?")).get("sensor")
        return picked[0] if picked else dash.no_update

    @app.callback(Output("day-store", "data"), Input("day", "date"), State("day-store", "data"), prevent_initial_call=True)
    def pick_day(date, current):
        # the date picker reports its (empty) date once its code has loaded: that is no change,
        # and must not make the chart be computed twice on the first paint
        return dash.no_update if date == current else date

    @app.callback(
        Output("chart", "figure"),
        Input("tick", "n_intervals"), Input("sensor", "value"), Input("span", "value"), Input("day-store", "data"),
    )  # fmt: skip
    def update_chart(_n, sensor, span, day):
        if not sensor:
            return sensor_figure("no sensor yet", pa.table({"ts": pa.array([], pa.int64())}), pa.table({"window_end": pa.array([], pa.int64())}),
                                 pa.table({"anomaly_id": pa.array([], pa.string())}), clock() - 3600 * US, clock())  # fmt: skip
        seconds = SPANS.get(span, 3600)
        if day:
            end = int(dt.datetime.combine(dt.date.fromisoformat(day[:10]) + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()) * US
        else:
            newest = data.last_readings()
            mine = newest.filter(pc.equal(newest["sensor_id"], sensor))
            fleet_newest = pc.max(newest["last_ts"]).as_py() if newest.num_rows else clock()
            # live: up to now, or up to the data's end when the lake holds history only
            end = min(clock(), max(fleet_newest, mine["last_ts"][0].as_py() if mine.num_rows else 0) + 60 * US)
        start = end - seconds * US
        return sensor_figure(sensor, data.sensor_readings(sensor, start, end), data.sensor_windows(sensor, start, end),
                             data.sensor_episodes(sensor, start, end), start, end)  # fmt: skip

    return app
