"""Read the sensor registry from ``$IOT_DATA_DIR/sensors.yaml`` (see :mod:`iot_platform.core.registry`).

The file is optional: without it, the simulated fleet's sensors get the
simulator's instruments and every other sensor data-driven defaults. Format::

    sensors:                      # first match wins; exact ids before patterns
      - id: pump-*                # a sensor id or an fnmatch pattern
        group: plant-a            # co-located sensors: systemic alerts stay inside a group
        interval_s: 1             # expected sample interval (else estimated from the data)
        sensitivity: 1.0          # x false alerts per day the statistical detectors allow
        multivariate: true        # its metrics share one process (default: the data decides)
        metrics:                  # the metrics it has (else: every metric present)
          pressure: {unit: bar, valid_range: [-1, 16], floor: 0.01}
          vibration: {unit: g, warning_above: 0.5, critical_above: 1.0}
          temperature: {unit: C, valid_range: [-40, 125]}
          humidity: {unit: "%RH", drift: false}   # weather moves it for days: no drift alerts
    unknown: data                 # sensors matching no entry: "data" (default) or "simulated"

Errors name the file, the entry and the field: ``sensors.yaml: sensors[2].metrics.pressure: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from iot_platform.core.registry import SIMULATED, UNKNOWN, SensorRegistry, platform_registry, spec_from_mapping
from iot_platform.core.simulator import FleetParams

FILE_NAME = "sensors.yaml"


def parse_registry(text: str, where: str = FILE_NAME, simulated_ids: Sequence[str] = (),
                   simulated_interval_s: float | None = None) -> SensorRegistry:  # fmt: skip
    """The registry described by ``text`` (the YAML above), plus the simulated fleet's sensors."""
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected a mapping with 'sensors' (a list) and optionally 'unknown'")
    extra = set(doc) - {"sensors", "unknown"}
    if extra:
        raise ValueError(f"{where}: unknown key {sorted(extra)[0]!r}; expected 'sensors' or 'unknown'")
    entries = doc.get("sensors") or []
    if not isinstance(entries, list):
        raise ValueError(f"{where}: 'sensors' must be a list of entries, got {type(entries).__name__}")
    specs = [spec_from_mapping(e, f"{where}: sensors[{i}]") for i, e in enumerate(entries)]
    unknown = doc.get("unknown", "data")
    if unknown not in ("data", "simulated"):
        raise ValueError(f"{where}: unknown={unknown!r} is invalid; expected 'data' or 'simulated'")
    return platform_registry(simulated_ids, simulated_interval_s, specs, UNKNOWN if unknown == "data" else SIMULATED)


def load_registry(data_dir: str | Path, simulated_ids: Sequence[str] = (),
                  simulated_interval_s: float | None = None) -> SensorRegistry:  # fmt: skip
    """The registry of ``data_dir/sensors.yaml`` (absent: none beyond the simulated fleet and the defaults)."""
    path = Path(data_dir) / FILE_NAME
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return parse_registry(text, str(path), simulated_ids, simulated_interval_s)


def fleet_registry(data_dir: str | Path, fleet: FleetParams | None) -> SensorRegistry:
    """The registry the platform runs with: the simulated ``fleet`` (None: off) plus ``sensors.yaml``."""
    if fleet is None:
        return load_registry(data_dir)
    return load_registry(data_dir, simulated_ids=fleet.sensor_ids, simulated_interval_s=fleet.sample_interval_s)
