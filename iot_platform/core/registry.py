"""The sensor registry: what each sensor is, so detection judges it by its own standards.

Per sensor id or id pattern (``fnmatch``: ``pump-*``), first match wins:

* the metrics it has, each with its unit, valid range (outside it the
  instrument is broken: a ``sensor_fault``, left out of every statistic),
  ingest limits (outside them a value cannot be a measurement: nulled at
  validation, quarantined with the reason), alarm thresholds and a floor of
  the spike detector's scale;
* whether its metrics share one process (``multivariate``: a pump's flow,
  pressure and vibration; None lets the data decide by their correlation),
* its expected sample interval, its group (co-located sensors behind one
  gateway: systemic alerts are only raised within a group), and a
  sensitivity (a multiplier of the false alerts per day the statistical
  detectors allow: 10 makes them more eager, 0.1 calmer).

Sensors matching no entry get ``unknown``. Two ready-made specs:

* :data:`SIMULATED`: the simulator's instruments (the physical ranges of
  ``schemas.VALID_RANGE``, vibration 2 / 5 g and battery 20 / 5 % alarms, one
  group ``fleet``). It is the default ``unknown`` of ``SensorRegistry()``, so
  code that passes no registry behaves as before;
* :data:`UNKNOWN`: data-driven: every metric present is analysed with scales
  learned from the data, no physical range or alarm is assumed (a pressure in
  bar or a CPU % mapped into a column is not a broken sensor), no group (an
  imported series never makes a fleet-wide alert with unrelated ones).

The platform's registry (:func:`platform_registry`) is the simulated fleet's
ids with :data:`SIMULATED`, then the entries of ``sensors.yaml``, then
:data:`UNKNOWN`. Pure: the YAML file is read by :mod:`iot_platform.io.registry`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from iot_platform.core.schemas import INGEST_LIMITS, METRICS, VALID_RANGE

_INF = math.inf


def _fail(obj: object, name: str, value: object, expected: str) -> None:
    raise ValueError(f"{type(obj).__name__}.{name}={value!r} is invalid; expected {expected}")


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair(obj: object, name: str) -> None:
    v = getattr(obj, name)
    if v is None:
        return
    if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in v) and v[0] < v[1]):  # fmt: skip
        _fail(obj, name, v, "None or a (low, high) pair of numbers with low < high")


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One metric of a sensor. Every field is optional: None means "learn it from the data" or "none"."""

    unit: str | None = None
    valid_range: tuple[float, float] | None = None
    ingest_limits: tuple[float, float] | None = None
    warning_above: float | None = None
    critical_above: float | None = None
    warning_below: float | None = None
    critical_below: float | None = None
    floor: float | None = None  # least scale of the spike detector, in the metric's unit
    # follow its window means for a slow shift; False for a metric whose level the weather moves for days
    # (a barometer: a week of history is no baseline for a 4-day synoptic cycle)
    drift: bool = True

    def __post_init__(self) -> None:
        if self.unit is not None and not isinstance(self.unit, str):
            _fail(self, "unit", self.unit, "a string or None")
        if not isinstance(self.drift, bool):
            _fail(self, "drift", self.drift, "true or false")
        _pair(self, "valid_range")
        _pair(self, "ingest_limits")
        for name in ("warning_above", "critical_above", "warning_below", "critical_below", "floor"):
            v = getattr(self, name)
            if v is not None and not _num(v):
                _fail(self, name, v, "a finite number or None")
        if self.floor is not None and self.floor < 0:
            _fail(self, "floor", self.floor, "a number >= 0 or None")


@dataclasses.dataclass(frozen=True)
class SensorSpec:
    """A sensor (``pattern`` an exact id) or a family of sensors (an ``fnmatch`` pattern)."""

    pattern: str = "*"
    metrics: tuple[tuple[str, MetricSpec], ...] | None = None  # None: every metric present, data-driven
    interval_s: float | None = None
    group: str | None = None
    sensitivity: float = 1.0
    # whether its metrics share one process (a pump): True / False, or None to let the data say (correlation)
    multivariate: bool | None = None
    # the simulator's own instruments (alarms follow ThresholdParams): set by SIMULATED only, never by a
    # sensors.yaml; a field, not an identity test on SIMULATED_METRICS, so it survives a copy or a pickle
    # (a worker process receives the registry pickled)
    simulated: bool = False

    def __post_init__(self) -> None:
        if self.multivariate not in (None, True, False):
            _fail(self, "multivariate", self.multivariate, "None, True or False")
        if not isinstance(self.pattern, str) or not self.pattern:
            _fail(self, "pattern", self.pattern, "a non-empty sensor id or fnmatch pattern")
        if self.metrics is not None:
            ok = isinstance(self.metrics, tuple) and all(
                isinstance(p, tuple) and len(p) == 2 and p[0] in METRICS and isinstance(p[1], MetricSpec)
                for p in self.metrics
            )
            if not ok:
                _fail(self, "metrics", self.metrics, f"None or (metric, MetricSpec) pairs of {', '.join(METRICS)}")
        if self.interval_s is not None and not (_num(self.interval_s) and 0.001 <= self.interval_s <= 86_400):
            _fail(self, "interval_s", self.interval_s, "None or seconds in [0.001, 86400]")
        if self.group is not None and (not isinstance(self.group, str) or not self.group):
            _fail(self, "group", self.group, "None or a non-empty group name")
        if not (_num(self.sensitivity) and self.sensitivity > 0):
            _fail(self, "sensitivity", self.sensitivity, "a number > 0")

    def metric(self, name: str) -> MetricSpec | None:
        """The spec of metric ``name``; an empty spec when metrics are data-driven, None when it has no such metric."""
        if self.metrics is None:
            return MetricSpec()
        return dict(self.metrics).get(name)


SIMULATED_METRICS: tuple[tuple[str, MetricSpec], ...] = (
    ("temperature", MetricSpec("C", VALID_RANGE["temperature"], INGEST_LIMITS["temperature"])),
    # the simulator's humidity follows its temperature's weather, its pressure a 3.7-day synoptic cycle: weather,
    # not drift (its drift faults are the temperature's)
    ("humidity", MetricSpec("%RH", VALID_RANGE["humidity"], INGEST_LIMITS["humidity"], drift=False)),
    ("pressure", MetricSpec("hPa", VALID_RANGE["pressure"], INGEST_LIMITS["pressure"], drift=False)),
    ("vibration", MetricSpec("g", VALID_RANGE["vibration"], INGEST_LIMITS["vibration"], warning_above=2.0,
                             critical_above=5.0)),  # fmt: skip
    ("battery_level", MetricSpec("%", VALID_RANGE["battery_level"], INGEST_LIMITS["battery_level"],
                                 warning_below=20.0, critical_below=5.0)),  # fmt: skip
)
# the simulator's metrics are separate instruments (a probe, a hygrometer, a barometer, an accelerometer)
SIMULATED = SensorSpec("*", SIMULATED_METRICS, group="fleet", multivariate=False, simulated=True)
UNKNOWN = SensorSpec("*")


@dataclasses.dataclass(frozen=True)
class SensorRegistry:
    """Specs of sensors, first match wins; ``unknown`` for the rest."""

    sensors: tuple[SensorSpec, ...] = ()
    unknown: SensorSpec = SIMULATED

    def __post_init__(self) -> None:
        if not isinstance(self.sensors, tuple) or any(not isinstance(s, SensorSpec) for s in self.sensors):
            _fail(self, "sensors", self.sensors, "a tuple of SensorSpec")
        if not isinstance(self.unknown, SensorSpec):
            _fail(self, "unknown", self.unknown, "a SensorSpec")

    @functools.cached_property
    def _index(self) -> tuple[dict[str, int], tuple[tuple[int, SensorSpec], ...]]:
        """(exact id -> position of its first spec, the specs with wildcards and their positions)."""
        exact: dict[str, int] = {}
        wild = []
        for i, s in enumerate(self.sensors):
            if any(c in s.pattern for c in "*?["):
                wild.append((i, s))
            else:
                exact.setdefault(s.pattern, i)
        return exact, tuple(wild)

    def spec(self, sensor_id: str) -> SensorSpec:
        # first match wins: the first exact id, unless a wildcard spec before it matches. A fleet
        # registry lists every simulated sensor by id: a scan per lookup was quadratic in the fleet
        exact, wild = self._index
        first = exact.get(sensor_id, len(self.sensors))
        for i, s in wild:
            if i > first:
                break
            if fnmatch.fnmatchcase(sensor_id, s.pattern):
                return s
        return self.sensors[first] if first < len(self.sensors) else self.unknown

    def resolve(self, names: Sequence[str] | np.ndarray) -> Resolved:
        """Per-sensor arrays (positions in ``names``) of everything the detectors read."""
        # built once per distinct spec (a fleet's sensors differ only by id), then gathered per sensor
        distinct: dict[tuple, int] = {}
        specs: list[SensorSpec] = []
        which = []
        for n in names:
            s = self.spec(str(n))
            key = (s.metrics, s.simulated, s.interval_s, s.group, s.sensitivity, s.multivariate)
            if key not in distinct:
                distinct[key] = len(specs)
                specs.append(s)
            which.append(distinct[key])
        return Resolved.build(specs).take(np.array(which, dtype=np.int64))

    def table_rows(self, names: Sequence[str]) -> list[dict]:
        """One row per (sensor, metric) it has: for a ``sensors`` table or the UI."""
        rows = []
        for n in names:
            s = self.spec(n)
            for m in METRICS:
                ms = s.metric(m)
                if ms is None:
                    continue
                rows.append(dict(sensor_id=n, metric=m, unit=ms.unit, valid_low=(ms.valid_range or (None, None))[0],
                                 valid_high=(ms.valid_range or (None, None))[1], group=s.group,
                                 interval_s=s.interval_s, sensitivity=s.sensitivity,
                                 source="registry" if s is not self.unknown else "default"))  # fmt: skip
        return rows


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The registry as arrays over a set of sensors (index = sensor code)."""

    has: dict[str, np.ndarray]  # bool: the sensor has the metric
    valid_lo: dict[str, np.ndarray]
    valid_hi: dict[str, np.ndarray]
    ingest_lo: dict[str, np.ndarray]
    ingest_hi: dict[str, np.ndarray]
    warning_above: dict[str, np.ndarray]  # NaN: no alarm
    critical_above: dict[str, np.ndarray]
    warning_below: dict[str, np.ndarray]
    critical_below: dict[str, np.ndarray]
    floor: dict[str, np.ndarray]  # 0: none
    drift: dict[str, np.ndarray]  # bool: the sensor has the metric and its drift is followed
    group: np.ndarray  # object: group name or None
    sensitivity: np.ndarray
    simulated: np.ndarray  # bool: the simulator's instruments (alarms follow ThresholdParams)
    multivariate: np.ndarray  # bool: not declared independent (None or True in the registry)

    def take(self, which: np.ndarray) -> Resolved:
        """The arrays of sensors ``which`` (positions in these), in that order."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = {m: a[which] for m, a in v.items()} if isinstance(v, dict) else v[which]
        return Resolved(**out)

    @classmethod
    def build(cls, specs: list[SensorSpec]) -> Resolved:
        n = len(specs)

        def arr(get, default):
            out = {}
            for m in METRICS:
                vals = []
                for s in specs:
                    ms = s.metric(m)
                    v = get(ms) if ms is not None else None
                    vals.append(default if v is None else v)
                out[m] = np.array(vals, dtype=np.float64 if not isinstance(default, bool) else bool).reshape(n)
            return out

        return cls(
            has={m: np.array([s.metric(m) is not None for s in specs], dtype=bool).reshape(n) for m in METRICS},
            valid_lo=arr(lambda ms: ms.valid_range and ms.valid_range[0], -_INF),
            valid_hi=arr(lambda ms: ms.valid_range and ms.valid_range[1], _INF),
            ingest_lo=arr(lambda ms: ms.ingest_limits and ms.ingest_limits[0], -_INF),
            ingest_hi=arr(lambda ms: ms.ingest_limits and ms.ingest_limits[1], _INF),
            warning_above=arr(lambda ms: ms.warning_above, np.nan),
            critical_above=arr(lambda ms: ms.critical_above, np.nan),
            warning_below=arr(lambda ms: ms.warning_below, np.nan),
            critical_below=arr(lambda ms: ms.critical_below, np.nan),
            floor=arr(lambda ms: ms.floor, 0.0),
            drift={m: np.array([s.metric(m) is not None and s.metric(m).drift for s in specs], dtype=bool).reshape(n)
                   for m in METRICS},  # fmt: skip
            group=np.array([s.group for s in specs], dtype=object).reshape(n),
            sensitivity=np.array([s.sensitivity for s in specs], dtype=np.float64).reshape(n),
            simulated=np.array([s.simulated for s in specs], dtype=bool).reshape(n),
            multivariate=np.array([s.multivariate is not False for s in specs], dtype=bool).reshape(n),
        )

    def alarms(self, thresholds) -> dict[str, np.ndarray]:
        """Per code: vibration_max and battery alarms (NaN: none); the simulator's instruments take
        ``thresholds`` (a ThresholdParams), the others their registry values."""
        sim = self.simulated
        t = thresholds
        return {
            "vibration_warning": np.where(sim, t.vibration_warning, self.warning_above["vibration"]),
            "vibration_critical": np.where(sim, t.vibration_critical, self.critical_above["vibration"]),
            "battery_warning": np.where(sim, t.battery_warning, self.warning_below["battery_level"]),
            "battery_critical": np.where(sim, t.battery_critical, self.critical_below["battery_level"]),
        }


def platform_registry(
    simulated_ids: Sequence[str] = (),
    simulated_interval_s: float | None = None,
    entries: Sequence[SensorSpec] = (),
    unknown: SensorSpec = UNKNOWN,
) -> SensorRegistry:
    """The platform's registry: the simulated fleet's sensors, then ``entries`` (sensors.yaml), then ``unknown``.

    ``sensors.yaml`` entries come after the simulated ids, so a file cannot re-describe a simulated sensor by a
    broad pattern by accident; it can by its exact id (exact ids are listed first).
    """
    exact = tuple(e for e in entries if not any(c in e.pattern for c in "*?["))
    patterns = tuple(e for e in entries if e not in exact)
    sim = tuple(
        dataclasses.replace(SIMULATED, pattern=i, interval_s=simulated_interval_s)
        for i in simulated_ids
        if not any(e.pattern == i for e in exact)
    )
    return SensorRegistry(sensors=exact + sim + patterns, unknown=unknown)


def spec_from_mapping(entry: Mapping, where: str) -> SensorSpec:
    """A SensorSpec from one entry of sensors.yaml (``where`` names it in errors).

    ::

        - id: pump-*            # exact id or fnmatch pattern
          group: plant-a
          interval_s: 1
          sensitivity: 1.0
          metrics:
            pressure: {unit: bar, valid_range: [-1, 16], floor: 0.01}
            vibration: {unit: g, warning_above: 0.5, critical_above: 1.0}
    """
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping with at least 'id'; got {entry!r}")
    allowed = {"id", "group", "interval_s", "sensitivity", "metrics", "multivariate"}
    extra = set(entry) - allowed
    if extra:
        raise ValueError(f"{where}: unknown field {sorted(extra)[0]!r}; expected one of {', '.join(sorted(allowed))}")
    if "id" not in entry:
        raise ValueError(f"{where}: field 'id' is required (a sensor id or an fnmatch pattern)")
    metrics = entry.get("metrics")
    pairs = None
    if metrics is not None:
        if not isinstance(metrics, Mapping):
            raise ValueError(f"{where}.metrics: expected a mapping of metric name to its fields; got {metrics!r}")
        pairs = []
        fields = {f.name for f in dataclasses.fields(MetricSpec)}
        for name, spec in metrics.items():
            if name not in METRICS:
                raise ValueError(f"{where}.metrics: metric {name!r} is not one of {', '.join(METRICS)}")
            spec = dict(spec or {})
            bad = set(spec) - fields
            if bad:
                raise ValueError(f"{where}.metrics.{name}: unknown field {sorted(bad)[0]!r}; expected one of "
                                 f"{', '.join(sorted(fields))}")  # fmt: skip
            for k in ("valid_range", "ingest_limits"):
                if isinstance(spec.get(k), list):
                    spec[k] = tuple(spec[k])
            try:
                pairs.append((name, MetricSpec(**spec)))
            except ValueError as e:
                raise ValueError(f"{where}.metrics.{name}: {e}") from None
        pairs = tuple(pairs)
    try:
        return SensorSpec(
            pattern=entry["id"] if isinstance(entry["id"], str) else entry["id"],
            metrics=pairs,
            interval_s=entry.get("interval_s"),
            group=entry.get("group"),
            sensitivity=entry.get("sensitivity", 1.0),
            multivariate=entry.get("multivariate"),
        )
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
