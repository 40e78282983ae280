"""The sensor chart (dashboard.figures) from tiny inline tables: rows, bands, episode markers."""

from __future__ import annotations

import pyarrow as pa

from iot_platform.dashboard.figures import age_text, sensor_figure

US = 1_000_000
T = 1_704_283_200 * US


def test_rows_bands_and_markers():
    readings = pa.table({"ts": pa.array([T, T + US, T + 2 * US], pa.int64()), "temperature": [20.0, 21.0, 22.0],
                         "vibration": [0.2, 0.3, 0.2]})  # fmt: skip
    windows = pa.table({"window_end": pa.array([T + 60 * US], pa.int64()), "temp_mean": [21.0], "temp_min": [20.0], "temp_max": [22.0],
                        "vibration_mean": [0.25], "vibration_max": [0.3]})  # fmt: skip
    episodes = pa.table({
        "anomaly_id": ["f", "s"], "anomaly_type": ["sensor_fault", "silent_sensor"], "severity": ["critical", "warning"],
        "metric": ["temperature", None], "start_ts": pa.array([T + US, T + 2 * US], pa.int64()), "end_ts": pa.array([T + US, T + 2 * US], pa.int64()),
        "value": [500.0, 60.0], "score": [415.0, None], "message": ["broken", "quiet"],
    })  # fmt: skip
    fig = sensor_figure("s1", readings, windows, episodes, T, T + 3600 * US)
    assert [a.text for a in fig.layout.annotations] == ["temperature (°C)", "vibration (g)"]
    assert [t.name for t in fig.data] == [
        "temperature band low", "temperature window spread", "temperature", "temperature window mean", "anomalies",
        "vibration band low", "vibration window spread", "vibration", "vibration window mean",
    ]
    (marks,) = [t for t in fig.data if t.name == "anomalies"]
    # 500 °C is kept within the row (22 + 15 % of the 2 °C range), the silence without a value goes on top too
    assert list(marks.y) == [22.3, 22.3]
    assert list(marks.text) == ["sensor_fault (critical), score 415.00<br>broken", "silent_sensor (warning)<br>quiet"]
    assert len(fig.layout.shapes) == 2  # one shaded span per episode


def test_age_text():
    assert [age_text(s) for s in (None, -3, 5, 119, 120, 7199, 7200, 172_799, 172_800)] == [
        "-", "0 s", "5 s", "119 s", "2 min", "119 min", "2 h", "47 h", "2 d"
    ]
