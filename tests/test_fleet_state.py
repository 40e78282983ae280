"""The dashboard's sensor states (core.fleet_state): exact states for tiny inline tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from iot_platform.core.fleet_state import StateParams, classify

US = 1_000_000
T = 1_704_283_200 * US


def last(**sensors: int) -> pa.Table:
    return pa.table({"sensor_id": list(sensors), "last_ts": pa.array([T + s * US for s in sensors.values()], pa.int64())})


def eps(*rows: tuple) -> pa.Table:
    """(sensor, severity, end s)"""
    return pa.table({"sensor_id": [r[0] for r in rows], "severity": [r[1] for r in rows],
                     "end_ts": pa.array([T + r[2] * US for r in rows], pa.int64())})  # fmt: skip


EMPTY = pa.table({"sensor_id": pa.array([], pa.string()), "severity": pa.array([], pa.string()), "end_ts": pa.array([], pa.int64())})


@pytest.mark.parametrize(
    "sensors, episodes, now_s, expected",
    [
        ({"a": 1000, "b": 999}, EMPTY, 1001, {"a": ("ok", 0), "b": ("ok", 0)}),
        ({"a": 1000, "b": 880}, EMPTY, 1001, {"a": ("ok", 0), "b": ("silent", 0)}),  # 120 s behind the fleet
        ({"a": 1000, "b": 881}, EMPTY, 1001, {"a": ("ok", 0), "b": ("ok", 0)}),
        ({"a": 1000, "b": 1000}, eps(("a", "warning", 990), ("b", "warning", 699), ("b", "critical", 995)), 1001,
         {"a": ("warning", 1), "b": ("critical", 1)}),  # b's warning ended more than 300 s ago
        ({"a": 1000, "b": 1000}, eps(("a", "warning", 990), ("a", "critical", 990)), 1001, {"a": ("critical", 2), "b": ("ok", 0)}),
        ({"a": 1000, "b": 880}, eps(("b", "critical", 870)), 1001, {"a": ("ok", 0), "b": ("silent", 1)}),
        ({"a": 1000, "b": 1000}, eps(("a", "critical", 990)), 1301, {"a": ("stale", 1), "b": ("stale", 0)}),
        ({"a": 1000}, EMPTY, 1300, {"a": ("ok", 0)}),  # exactly stale_after_s: not yet stale
    ],
)
def test_states(sensors, episodes, now_s, expected):
    out = classify(last(**sensors), episodes, T + now_s * US, StateParams())
    got = {r["sensor_id"]: (r["state"], r["n_open"]) for r in out.to_pylist()}
    assert got == expected
    assert out["age_s"].to_pylist() == [float(now_s - sensors[s]) for s in sorted(sensors)]


def test_params_validate():
    with pytest.raises(ValueError, match="silent_after_s=0 is invalid; expected an integer > 0"):
        StateParams(silent_after_s=0)
