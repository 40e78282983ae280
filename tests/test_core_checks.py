"""Data-quality checks of window_stats and anomalies, and the UI metadata (counts, worst sensors, plot)."""

from __future__ import annotations

import datetime as dt
import struct

import pyarrow as pa
import pytest

from iot_platform.core import checks
from iot_platform.core.checks import ANOMALIES_CHECKS, WINDOW_STATS_CHECKS, CheckResult
from iot_platform.core.plots import anomaly_counts, most_affected_sensors, plot_sensor_day, worst_sensor
from iot_platform.core.schemas import ANOMALIES, FLEET_ID, READINGS, TS_TYPE, WINDOW_STATS, conform


def at(seconds: float) -> dt.datetime:
    return dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)


def window_stats(rows: list[dict]) -> pa.Table:
    base = dict(sensor_id="s1", n_readings=300, temp_mean=20.0, temp_std=0.1, temp_min=19.8, temp_max=20.2,
                vibration_mean=0.3, vibration_max=0.4, missing_rate=0.0)  # fmt: skip
    out = []
    for r in rows:
        r = {**base, **r}
        end = r.pop("end")
        out.append({"window_start": at(end - 300), "window_end": at(end), **r})
    return conform(pa.Table.from_pylist(out), WINDOW_STATS)


def anomalies(rows: list[dict]) -> pa.Table:
    base = dict(sensor_id="s1", anomaly_type="spike", severity="critical", metric="temperature", value=1.0,
                threshold=1.0, score=1.0, n_points=1, systemic_id=None, message="")  # fmt: skip
    out = []
    for i, r in enumerate(rows):
        r = {"anomaly_id": f"id{i}", **base, **r}
        start, end = r.pop("start", 0), r.pop("end", 0)
        out.append({"start_ts": at(start), "end_ts": at(end), **r})
    return conform(pa.Table.from_pylist(out), ANOMALIES)


def test_good_tables_pass_every_check():
    ws = window_stats([dict(end=60), dict(end=120), dict(sensor_id="s2", end=60, temp_mean=None, temp_std=None,
                                                              temp_min=None, temp_max=None)])  # fmt: skip
    an = anomalies([dict(start=0, end=10), dict(start=5, end=5, anomaly_type="systemic", sensor_id=FLEET_ID)])
    for check in WINDOW_STATS_CHECKS.values():
        assert check(ws) == CheckResult(True, 0, ws.slice(0, 0))
    for check in ANOMALIES_CHECKS.values():
        assert check(an) == CheckResult(True, 0, an.slice(0, 0))


def test_window_counts_and_rates_in_range_returns_the_bad_rows():
    ws = window_stats([dict(end=60), dict(end=120, n_readings=0), dict(end=180, missing_rate=1.2),
                       dict(end=240, missing_rate=-0.1), dict(end=300, missing_rate=None), dict(end=360)])  # fmt: skip
    passed, n_bad, examples = checks.window_counts_and_rates_in_range(ws)
    assert (passed, n_bad) == (False, 4)
    assert examples.column("window_end").to_pylist() == [at(120), at(180), at(240), at(300)]


def test_window_statistics_consistent():
    ws = window_stats([dict(end=60, temp_mean=20.3), dict(end=120, temp_std=-0.1), dict(end=180, vibration_mean=0.5),
                       dict(end=240)])  # fmt: skip
    passed, n_bad, examples = checks.window_statistics_consistent(ws)
    assert (passed, n_bad, examples.column("window_end").to_pylist()) == (False, 3, [at(60), at(120), at(180)])


def test_window_keys_unique():
    ws = window_stats([dict(end=60), dict(end=60, n_readings=7), dict(end=120), dict(sensor_id="s2", end=60)])
    passed, n_bad, examples = checks.window_keys_unique(ws)
    assert (passed, n_bad, examples.column("n_readings").to_pylist()) == (False, 2, [300, 7])


def test_anomaly_types_and_severities_known():
    an = anomalies([dict(anomaly_type="glitch"), dict(severity="info"), dict(anomaly_type="drift", severity="warning")])
    assert checks.anomaly_types_known(an)[:2] == (False, 1)
    assert checks.anomaly_types_known(an).examples.column("anomaly_type").to_pylist() == ["glitch"]
    assert checks.anomaly_severities_known(an)[:2] == (False, 1)
    assert checks.anomaly_severities_known(an).examples.column("severity").to_pylist() == ["info"]


def test_anomaly_start_not_after_end():
    an = anomalies([dict(start=0, end=10), dict(start=10, end=9), dict(start=3, end=3)])
    passed, n_bad, examples = checks.anomaly_start_not_after_end(an)
    assert (passed, n_bad, examples.column("anomaly_id").to_pylist()) == (False, 1, ["id1"])


def test_anomaly_ids_unique():
    an = anomalies([dict(), dict(), dict()])
    an = an.set_column(0, ANOMALIES.field("anomaly_id"), pa.array(["a", "b", "a"]))
    passed, n_bad, examples = checks.anomaly_ids_unique(an)
    assert (passed, n_bad, examples.column("anomaly_id").to_pylist()) == (False, 2, ["a", "a"])


def test_examples_are_capped():
    ws = window_stats([dict(end=60 * i, n_readings=0) for i in range(1, 9)])
    result = checks.window_counts_and_rates_in_range(ws)
    assert (result.n_bad, result.examples.num_rows) == (8, checks.MAX_EXAMPLES)


# -- UI metadata ------------------------------------------------------------------------
AN = anomalies(
    [
        dict(sensor_id="s2", anomaly_type="spike", severity="critical"),
        dict(sensor_id="s2", anomaly_type="drift", severity="warning"),
        dict(sensor_id="s1", anomaly_type="flatline", severity="critical"),
        dict(sensor_id="s3", anomaly_type="low_battery", severity="warning"),
        dict(sensor_id="s3", anomaly_type="low_battery", severity="warning"),
        dict(sensor_id="s3", anomaly_type="silent_sensor", severity="warning"),
        dict(sensor_id=FLEET_ID, anomaly_type="systemic", severity="critical"),
    ]
)


def test_anomaly_counts_by_type_and_severity():
    assert anomaly_counts(AN) == {
        "by_type": {"spike": 1, "drift": 1, "flatline": 1, "low_battery": 2, "silent_sensor": 1, "systemic": 1},
        "by_severity": {"warning": 4, "critical": 3},
        "by_type_and_severity": {"spike/critical": 1, "drift/warning": 1, "flatline/critical": 1,
                                 "low_battery/warning": 2, "silent_sensor/warning": 1, "systemic/critical": 1},
    }  # fmt: skip


def test_most_affected_sensors_rank_critical_first_and_leave_out_the_fleet():
    assert most_affected_sensors(AN) == [("s2", 1, 2), ("s1", 1, 1), ("s3", 0, 3)]
    assert worst_sensor(AN) == "s2"
    assert worst_sensor(ANOMALIES.empty_table()) is None


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_plot_sensor_day_is_a_png_and_deterministic():
    pytest.importorskip("matplotlib")
    n = 600
    r = conform(
        pa.table(
            {
                "sensor_id": ["s2"] * n + ["s1"] * 3,
                "ts": pa.array([(at(0).timestamp() + i) * 1e6 for i in range(n)] + [0, 1, 2], pa.float64())
                .cast(pa.int64())
                .cast(TS_TYPE),
                "temperature": [20.0 + (i % 7) * 0.1 for i in range(n - 1)] + [500.0] + [1.0] * 3,
                "vibration": [0.3] * (n + 3),
                "battery_level": [50.0] * (n + 3),
            }
        ),
        READINGS,
    )
    an = anomalies([dict(sensor_id="s2", start=100, end=100), dict(sensor_id="s2", anomaly_type="drift", start=200,
                                                                    end=500, metric="temperature")])  # fmt: skip
    png = plot_sensor_day(r, an, "s2")
    assert _png_size(png) == (880, 560)
    assert plot_sensor_day(r, an, "s2") == png
    assert _png_size(plot_sensor_day(READINGS.empty_table(), ANOMALIES.empty_table(), "nobody")) == (880, 560)
