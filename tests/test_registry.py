"""The sensor registry: specs, matching, arrays, and the sensors.yaml loader (real files in tmp_path)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from iot_platform.core.detectors import ThresholdParams
from iot_platform.core.registry import SIMULATED, UNKNOWN, MetricSpec, SensorRegistry, SensorSpec, platform_registry
from iot_platform.io.registry import load_registry, parse_registry

YAML = """
sensors:
  - id: pump-*
    group: plant-a
    interval_s: 1
    sensitivity: 0.5
    metrics:
      pressure: {unit: bar, valid_range: [-1, 16], floor: 0.01}
      vibration: {unit: g, warning_above: 0.5, critical_above: 1.0}
  - id: pump-7
    group: lab
"""


def test_first_match_wins_exact_ids_first_and_the_simulated_fleet_keeps_its_instruments(tmp_path):
    (tmp_path / "sensors.yaml").write_text(YAML)
    reg = load_registry(tmp_path, simulated_ids=["sensor_001"], simulated_interval_s=1.0)
    assert reg.spec("pump-7").group == "lab"  # an exact id comes before a pattern
    assert reg.spec("pump-1").group == "plant-a"
    assert reg.spec("sensor_001").group == "fleet" and reg.spec("sensor_001").interval_s == 1.0
    assert reg.spec("cpu-load") is UNKNOWN  # data-driven: no range, no alarm, no group
    res = reg.resolve(["cpu-load", "pump-1", "sensor_001"])
    assert res.valid_lo["pressure"].tolist() == [-math.inf, -1.0, 300.0]
    assert res.valid_hi["pressure"].tolist() == [math.inf, 16.0, 1100.0]
    assert res.has["temperature"].tolist() == [True, False, True]  # pump-1 lists only pressure and vibration
    assert res.floor["pressure"].tolist() == [0.0, 0.01, 0.0]
    assert res.group.tolist() == [None, "plant-a", "fleet"]
    assert res.sensitivity.tolist() == [1.0, 0.5, 1.0]
    alarms = res.alarms(ThresholdParams(vibration_warning=3.0))
    assert np.isnan(alarms["vibration_warning"][0]) and alarms["vibration_warning"][1:].tolist() == [0.5, 3.0]


def test_no_file_means_the_simulated_fleet_and_data_driven_defaults(tmp_path):
    reg = load_registry(tmp_path, simulated_ids=["sensor_001"])
    assert reg.spec("sensor_001").metrics == SIMULATED.metrics
    assert reg.spec("anything") is UNKNOWN
    assert parse_registry("unknown: simulated").unknown is SIMULATED
    assert SensorRegistry().spec("x") is SIMULATED  # the core's default: everything like the simulator


@pytest.mark.parametrize(
    "text, message",
    [
        ("sensors: [{group: a}]", r"sensors.yaml: sensors\[0\]: field 'id' is required"),
        ("sensors: [{id: a, colour: red}]", r"sensors\[0\]: unknown field 'colour'"),
        ("sensors: [{id: a, metrics: {rpm: {}}}]", r"sensors\[0\].metrics: metric 'rpm' is not one of temperature"),
        ("sensors: [{id: a, metrics: {pressure: {valid_range: [5, 1]}}}]",
         r"sensors\[0\].metrics.pressure: MetricSpec.valid_range=\(5, 1\) is invalid"),
        ("sensors: [{id: a, sensitivity: 0}]", r"sensors\[0\]: SensorSpec.sensitivity=0 is invalid; expected a number > 0"),
        ("unknown: maybe", r"unknown='maybe' is invalid; expected 'data' or 'simulated'"),
        ("sensors: {id: a}", r"'sensors' must be a list"),
        ("sensors: [", r"sensors.yaml: not valid YAML"),
    ],
)  # fmt: skip
def test_errors_name_the_file_the_entry_and_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        parse_registry(text)


def test_table_rows_list_each_sensors_metrics():
    reg = platform_registry(entries=[SensorSpec("p", (("pressure", MetricSpec("bar", (-1.0, 16.0))),), group="g")])
    assert reg.table_rows(["p"]) == [dict(sensor_id="p", metric="pressure", unit="bar", valid_low=-1.0, valid_high=16.0,
                                          group="g", interval_s=None, sensitivity=1.0, source="registry")]  # fmt: skip


def test_first_match_wins_across_exact_ids_and_patterns_in_any_order():
    a = SensorSpec("pump-1", group="exact-late", sensitivity=2.0)
    b = SensorSpec("pump-*", group="pattern")
    c = SensorSpec("fan-1", group="exact")
    d = SensorSpec("pump-1", group="second-exact")  # never reached: pump-1 is matched before it
    reg = SensorRegistry(sensors=(c, b, a, d), unknown=UNKNOWN)
    assert [reg.spec(i).group for i in ("fan-1", "pump-1", "pump-2", "fan-2")] == ["exact", "pattern", "pattern", None]
    reg = SensorRegistry(sensors=(a, b, c, d), unknown=UNKNOWN)
    assert [reg.spec(i).group for i in ("fan-1", "pump-1", "pump-2", "fan-2")] == ["exact", "exact-late", "pattern", None]
    # resolved per sensor from one build per distinct spec: the same arrays as sensor by sensor
    names = ["pump-1", "fan-2", "pump-2", "fan-1", "pump-1"]
    res = reg.resolve(names)
    assert res.group.tolist() == ["exact-late", None, "pattern", "exact", "exact-late"]
    assert res.sensitivity.tolist() == [2.0, 1.0, 1.0, 1.0, 2.0]
    assert res.simulated.tolist() == [False] * 5
    fleet = platform_registry(simulated_ids=[f"s{i:04d}" for i in range(3000)], simulated_interval_s=1.0)
    got = fleet.resolve(["s2999", "x", "s0000"])
    assert got.simulated.tolist() == [True, False, True]
    assert got.valid_hi["vibration"].tolist() == [SIMULATED.metric("vibration").valid_range[1], math.inf,
                                                  SIMULATED.metric("vibration").valid_range[1]]  # fmt: skip
