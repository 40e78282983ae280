"""Parameters of the detectors: frozen dataclasses that validate themselves on construction.

One dataclass per detector family, gathered in :class:`DetectionParams`.
Defaults come from the seed tutorial where it gives one (z-score 3 / 5,
flatline std 0.01 over 30 readings, vibration 2 / 5 g, battery 20 / 5 %,
missing rate 0.1, 30 readings before alerting, systemic above half the fleet);
the others are explained where they are defined. The seed's drift values
(0.5 C allowance, 5 C threshold against a running mean) are not kept: see
:class:`DriftParams`.

Errors name the field, the value received and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from iot_platform.core.registry import SensorRegistry
from iot_platform.core.schemas import ANOMALY_TYPES, METRICS
from iot_platform.core.windows import US, WindowParams, expected_readings, geometry

READING_TYPES = ("spike", "level_shift", "sensor_fault", "multivariate", "flatline")  # detected per reading; all other types per window or tick


def _fail(obj: object, name: str, value: object, expected: str) -> None:
    raise ValueError(f"{type(obj).__name__}.{name}={value!r} is invalid; expected {expected}")


def _number(obj: object, name: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> None:
    v = getattr(obj, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        rng = f"{'>' if lo_open else '>='} {lo}" if lo is not None else "finite"
        _fail(obj, name, v, f"a number {rng}" + (f" and <= {hi}" if hi is not None else ""))


def _integer(obj: object, name: str, lo: int) -> None:
    v = getattr(obj, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        _fail(obj, name, v, f"an integer >= {lo}")


SPIKE_METRICS = ("temperature", "humidity", "pressure", "vibration")


def _floors(obj: object, name: str) -> None:
    v = getattr(obj, name)
    ok = isinstance(v, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and p[0] in METRICS and _num(p[1]) and p[1] >= 0 for p in v
    )
    if not ok:
        _fail(obj, name, v, "a tuple of (metric, floor >= 0) pairs, e.g. (('temperature', 0.5),)")


@dataclasses.dataclass(frozen=True)
class SpikeParams:
    """Robust z-score of each reading of every metric against the trailing window of its own sensor.

    Trailing window: the sensor's window that ended where the reading's
    sub-window (pane, one hop long) begins. Location: the median of the means of
    the last ``location_subwindows`` panes; scale: the median over the window's
    panes of the mean absolute successive difference (times sqrt(pi)/2, an
    estimate of the noise sd that slow trends such as the diurnal cycle do not
    inflate), floored at the metric's resolution (the smallest step between
    its readings in the window, times ``resolution_floor``: a count or a
    value reported to 0.1 cannot be judged on a finer scale) and at its
    ``floors`` entry if any. A spike or two inside the window moves neither
    median. Every scale is the sensor's own: no unit is assumed.

    metrics: the metrics analysed (battery_level is left out by default: a
        battery drains without noise and is judged by its thresholds).
    warning_z, critical_z: z above which a reading alerts (warning /
        critical), at least; the threshold actually used also follows the
        sample rate (``false_alerts_per_day``), and critical keeps its ratio to
        warning (5 / 3).
    false_alerts_per_day: the warning threshold is at least the z that
        Gaussian noise exceeds this often per metric and day at the sensor's
        rate (5.7 at 1 Hz, 4.6 every 5 min, 4.1 hourly): a z of 3 on 86,400
        readings a day alerts 233 times a day on pure noise. The reference's
        own estimation error fattens the tails, hence 0.001 rather than 0.01
        (on the simulator, 0.01 gives 0.1 false spikes per sensor-day).
    floors: optional per-metric absolute floors of the scale, in the metric's
        units (e.g. ``(("temperature", 0.5),)`` for a +-0.5 C probe).
    resolution_floor: the scale is at least this many resolution steps.
    max_spike_readings: a deviation lasting more readings than this is a
        level shift (``level_shift``), not a spike.
    variance_ratio, variance_min_diffs: a completed pane whose noise sd (from
        at least ``variance_min_diffs`` successive differences) is this many
        times above or below the trailing window's is a ``variance_change``
        (panes holding spikes excluded). Needs several readings per pane:
        sensors sampling at least every few seconds.
    """

    metrics: tuple[str, ...] = SPIKE_METRICS
    warning_z: float = 3.0
    critical_z: float = 5.0
    false_alerts_per_day: float = 0.001
    floors: tuple[tuple[str, float], ...] = ()
    resolution_floor: float = 1.0
    location_subwindows: int = 5
    max_gap_intervals: float = 3.0  # successive differences only between readings this close (in intervals)
    max_spike_readings: int = 3
    variance_ratio: float = 3.0
    variance_min_diffs: int = 20

    def __post_init__(self) -> None:
        _number(self, "variance_ratio", lo=1, lo_open=True)
        _integer(self, "variance_min_diffs", 2)
        if not isinstance(self.metrics, tuple) or any(m not in METRICS for m in self.metrics):
            _fail(self, "metrics", self.metrics, f"a tuple of {', '.join(METRICS)}")
        _number(self, "warning_z", lo=0, lo_open=True)
        _number(self, "critical_z", lo=self.warning_z if isinstance(self.warning_z, (int, float)) else 0)
        _number(self, "false_alerts_per_day", lo=0, lo_open=True)
        _floors(self, "floors")
        _number(self, "resolution_floor", lo=0)
        _integer(self, "location_subwindows", 1)
        _number(self, "max_gap_intervals", lo=1)
        _integer(self, "max_spike_readings", 1)

    def floor(self, metric: str) -> float:
        return dict(self.floors).get(metric, 0.0)

    def warning_at(self, interval_us: np.ndarray, sensitivity: np.ndarray | float = 1.0) -> np.ndarray:
        """The warning z per sensor: at least ``warning_z``, and the Gaussian z exceeded
        ``false_alerts_per_day`` (times the sensor's registry sensitivity) times a day at each sample interval."""
        per_day = np.maximum(86_400 * US / np.asarray(interval_us, dtype=np.float64), 1.0)
        p = np.minimum(self.false_alerts_per_day * np.asarray(sensitivity, dtype=np.float64) / per_day, 0.5)  # two-sided tail probability per reading
        return np.maximum(self.warning_z, gaussian_isf(p / 2))


def gaussian_isf(p: np.ndarray) -> np.ndarray:
    """z with P(Z > z) = p for a standard normal Z (p in (0, 0.5]), to about 1e-4 (bisection on erfc)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0 or p.size > 4096:
        return _gaussian_isf(p)
    # per sensor, mostly one value, the same for every frame: the bisection once per distinct set of values
    # (elementwise, so the same z as a bisection over all of them)
    u, inv = np.unique(p, return_inverse=True)
    return np.array(_gaussian_isf_cached(tuple(u.tolist())))[inv].reshape(p.shape)


@functools.lru_cache(maxsize=256)
def _gaussian_isf_cached(p: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(_gaussian_isf(np.array(p, dtype=np.float64)).tolist())


def _gaussian_isf(p: np.ndarray) -> np.ndarray:
    lo, hi = np.zeros_like(p), np.full_like(p, 40.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        tail = 0.5 * np.vectorize(math.erfc)(mid / math.sqrt(2)) if mid.size else mid
        lo, hi = np.where(tail > p, mid, lo), np.where(tail > p, hi, mid)
    return (lo + hi) / 2


@dataclasses.dataclass(frozen=True)
class HistoryParams:
    """Slow sensors (windows that cannot pass the warm-up) judged against their own trailing readings.

    See :mod:`iot_platform.core.detectors.history`. ``history_s`` bounds the
    look-back (and the context a slice needs: a day, 24 readings of an
    hourly sensor); at most ``max_readings`` of them are
    used (48: a whole day of a 30-minute sensor, so that the scale of the
    prediction errors sees a daily cycle's peak and trough, where a line
    extrapolates worst, and comes from twice as many errors as with half a
    day), at least ``min_readings`` are needed (warm-up); the location is the
    Theil-Sen line through the latest ``location_readings``. Readings of a run
    of one repeated value past its first ``stuck_readings`` are a stuck
    sensor's (flatline): neither reference nor judged.
    """

    history_s: int = 24 * 3600
    max_readings: int = 48
    min_readings: int = 8
    location_readings: int = 8
    stuck_readings: int = 8

    def __post_init__(self) -> None:
        _integer(self, "stuck_readings", 2)
        _integer(self, "history_s", 1)
        _integer(self, "max_readings", 2)
        _integer(self, "min_readings", 2)
        _integer(self, "location_readings", 2)
        if self.min_readings > self.max_readings:
            _fail(self, "min_readings", self.min_readings, f"at most max_readings={self.max_readings}")
        if self.location_readings > self.max_readings:
            _fail(self, "location_readings", self.location_readings, f"at most max_readings={self.max_readings}")


@dataclasses.dataclass(frozen=True)
class MultivariateParams:
    """PCA of a sensor's metrics with Hotelling T^2 and Q (:mod:`iot_platform.core.detectors.multivariate`).

    block_s, fit_blocks: each block of ``block_s`` is scored by a model fitted on the sensor's previous
        ``fit_blocks`` blocks (15 min at the defaults: 900 readings at 1 Hz; sensors slower than
        ``fit_blocks * block_s / min_fit_readings`` are not modelled). It sets the context a slice needs.
    min_corr: only sensors with some pair of metrics correlated at least this much in the fit are modelled.
    variance_kept: principal components kept (at least one, at most all but one).
    false_alerts_per_day: tail probability of the T^2 and Q limits, per sensor-day at its rate.
    critical_ratio: critical above this multiple of the limit.
    t2_alerts: alert on T^2 too (off: a 15-minute fit has not seen every duty point; Q, the broken relation,
        is what the short fit judges well).
    """

    metrics: tuple[str, ...] = SPIKE_METRICS
    block_s: int = 300
    fit_blocks: int = 3
    min_fit_readings: int = 60
    min_corr: float = 0.5
    variance_kept: float = 0.9
    false_alerts_per_day: float = 0.001
    critical_ratio: float = 3.0
    enabled: bool = True
    t2_alerts: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, tuple) or any(m not in METRICS for m in self.metrics):
            _fail(self, "metrics", self.metrics, f"a tuple of {', '.join(METRICS)}")
        _integer(self, "block_s", 1)
        _integer(self, "fit_blocks", 1)
        _integer(self, "min_fit_readings", 3)
        _number(self, "min_corr", lo=0, hi=1)
        _number(self, "variance_kept", lo=0, lo_open=True, hi=1)
        _number(self, "false_alerts_per_day", lo=0, lo_open=True)
        _number(self, "critical_ratio", lo=1)
        for name in ("enabled", "t2_alerts"):
            if not isinstance(getattr(self, name), bool):
                _fail(self, name, getattr(self, name), "True or False")


@dataclasses.dataclass(frozen=True)
class SensorFaultParams:
    """Physically impossible values: outside ``schemas.VALID_RANGE`` (e.g. 500 C, -127 C).

    The ranges are a property of the instruments, shared with the window
    statistics (which leave the same values out), so they are not a parameter
    here; ``metrics`` chooses which metrics are checked. Severity: critical.
    """

    metrics: tuple[str, ...] = METRICS

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, tuple) or not self.metrics or any(m not in METRICS for m in self.metrics):
            _fail(self, "metrics", self.metrics, f"a non-empty tuple of {', '.join(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            _fail(self, "metrics", self.metrics, "no repeated metric")


@dataclasses.dataclass(frozen=True)
class DriftParams:
    """Two-sided CUSUM of the window means of each metric against a baseline from previous days.

    metrics: the metrics followed (each sensor's own that it has; the scale
        of each (sensor, metric) is learned from its window means: the
        temperature's floor ``min_scale`` is in C, other metrics are floored
        at their registry ``floor`` only; ``flat_std`` and ``max_spread`` use
        ``temp_std`` and apply to temperature, the only metric with a window sd).

    Baseline (:func:`~iot_platform.core.detectors.drift.drift_baseline`): per
    sensor and time of day (the window end modulo 24 h), the median over the
    previous days of ``temp_mean``; per sensor, a robust sd of the deviations
    from it, floored at ``min_scale``. Each window gives ``z = (temp_mean -
    median) / sd``; ``S+`` and ``S-`` accumulate ``z - k`` and ``-z - k``
    over the last ``memory_s`` (a CUSUM that forgets evidence older than that,
    which keeps every slice a function of a bounded context). A window alerts
    (warning) when ``S > h`` and its own deviation still exceeds ``release``
    in that direction, so an episode ends when the drift does.

    k, h: in units of the sd. The sd is dominated by day-to-day weather (a
        day's offset persists for hours, so the deviations are not the
        independent noise the textbook k = 0.5 assumes); k = 2.5 tolerates
        ordinary weather and h = 20 asks for a quarter of an hour of
        sustained excess at 1 Hz (tuned on the simulator, where k = 2 halves
        the precision for the same recall).
    history_days: how many previous days of window_stats the caller passes.
    min_days: slots seen on fewer previous days are not evaluated (warm-up:
        with no history, no drift is evaluated).
    flat_std: windows whose temp_std is at or below this are a stuck sensor
        (the flatline detector's), not evidence of drift; the baseline skips
        them too.
    max_spread: windows whose temp_std exceeds this many times the sensor's
        usual window sd (its median over the previous days, at least
        ``min_scale``) hold outliers: at one reading every 5 minutes, three
        spiked readings of 30 C move a 40-reading window's mean by 2 C for
        three hours, which is no drift. Such windows are not evidence.
    min_scale: floor of the sd, in C: below it, a day's weather (+-0.4 C from
        one day to the next in the simulator) makes alerts.
    release: an alerting window must still deviate by this many sd in the
        drift's direction, so the episode ends soon after the drift does.
    """

    metrics: tuple[str, ...] = SPIKE_METRICS
    k: float = 2.5
    h: float = 20.0
    release: float = 1.5
    memory_s: int = 6 * 3600
    history_days: int = 7
    min_days: int = 3
    min_scale: float = 0.5
    flat_std: float = 0.01
    max_spread: float = 4.0

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, tuple) or any(m not in METRICS for m in self.metrics):
            _fail(self, "metrics", self.metrics, f"a tuple of {', '.join(METRICS)}")
        _number(self, "k", lo=0)
        _number(self, "max_spread", lo=0, lo_open=True)
        _number(self, "h", lo=0, lo_open=True)
        _number(self, "release", lo=0)
        _integer(self, "memory_s", 1)
        _integer(self, "history_days", 1)
        _integer(self, "min_days", 1)
        if self.min_days > self.history_days:
            _fail(self, "min_days", self.min_days, f"at most history_days={self.history_days}")
        _number(self, "min_scale", lo=0, lo_open=True)
        _number(self, "flat_std", lo=0)


@dataclasses.dataclass(frozen=True)
class FlatlineParams:
    """A stuck sensor: a run of identical readings longer than the sensor's own data makes plausible.

    See :mod:`iot_platform.core.detectors.flatline`. metrics: the metrics
    judged; min_readings: the shortest run that can alert (a continuous metric
    repeating itself 8 times is stuck); false_alerts_per_day: how often per
    metric and day a run as long as the threshold may happen by chance, given
    how often the sensor's readings repeat (times the registry sensitivity);
    max_gap_intervals: readings further apart (in sample intervals) break a run.
    Severity: critical.
    """

    metrics: tuple[str, ...] = SPIKE_METRICS
    min_readings: int = 8
    false_alerts_per_day: float = 0.001
    max_gap_intervals: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, tuple) or any(m not in METRICS for m in self.metrics):
            _fail(self, "metrics", self.metrics, f"a tuple of {', '.join(METRICS)}")
        _integer(self, "min_readings", 2)
        _number(self, "false_alerts_per_day", lo=0, lo_open=True)
        _number(self, "max_gap_intervals", lo=1)


@dataclasses.dataclass(frozen=True)
class ThresholdParams:
    """Fixed limits on window statistics (seed defaults).

    vibration_max above ``vibration_warning`` / ``vibration_critical`` (g);
    battery_level (last in window) below ``battery_warning`` /
    ``battery_critical`` (%); missing_rate above ``missing_rate_warning``
    with at least ``missing_min_count`` readings missing, in windows of a
    sensor that was reporting before the window began.
    The warm-up applies to vibration and battery; not to the missing rate,
    which is the count of readings itself rather than a statistic estimated
    from too few of them (a window with 20 of 300 expected readings is the
    anomaly).
    """

    vibration_warning: float = 2.0
    vibration_critical: float = 5.0
    battery_warning: float = 20.0
    battery_critical: float = 5.0
    missing_rate_warning: float = 0.1
    missing_min_count: int = 2

    def __post_init__(self) -> None:
        _integer(self, "missing_min_count", 1)
        _number(self, "vibration_warning", lo=0)
        _number(self, "vibration_critical", lo=self.vibration_warning if _num(self.vibration_warning) else 0)
        _number(self, "battery_warning", lo=0, hi=100)
        _number(self, "battery_critical", lo=0, hi=self.battery_warning if _num(self.battery_warning) else 100)
        _number(self, "missing_rate_warning", lo=0, hi=1)


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True)
class SilenceParams:
    """A known sensor that stops reporting is an anomaly, not an absence of anomalies.

    At each tick (a multiple of ``WindowParams.hop_s``), a known sensor with no
    reading in the last ``max(min_silence_s, missed_samples * interval)``
    seconds is silent (warning); critical once it also has had no window for
    ``critical_after_s``. Known: in the drift baseline (seen on a previous day)
    or with a window ending in the last ``horizon_s``; a sensor never seen
    before is not missed, and one gone for longer than the horizon without
    history is forgotten (a bounded context for every slice).
    """

    min_silence_s: float = 60.0
    missed_samples: int = 5
    critical_after_s: int = 3600
    horizon_s: int = 6 * 3600

    def __post_init__(self) -> None:
        _number(self, "min_silence_s", lo=0, lo_open=True)
        _integer(self, "missed_samples", 1)
        _integer(self, "critical_after_s", 1)
        _integer(self, "horizon_s", 1)
        if self.horizon_s < self.critical_after_s:
            _fail(self, "horizon_s", self.horizon_s, f"at least critical_after_s={self.critical_after_s}")


SYSTEMIC_TYPES = ("spike", "sensor_fault", "drift", "flatline", "high_vibration", "high_missing_rate", "silent_sensor")


@dataclasses.dataclass(frozen=True)
class SystemicParams:
    """More than ``min_fraction`` of the fleet alerting in one tick is one fleet-wide anomaly.

    A tick (``WindowParams.hop_s``) covers the readings in ``[tick - hop, tick)``
    and the windows ending at it. Fleet: the known sensors (see
    :class:`SilenceParams`); at least ``min_fleet`` of them, so that two
    sensors of a three-sensor site are not "the fleet". ``types`` are the
    alert types counted: low battery is not (a fleet installed on one day
    drains together, and every sensor still needs its battery changed).
    ``mode``: ``"link"`` keeps the individual alerts with ``systemic_id`` set;
    ``"suppress"`` drops them (seed's network-burst scenario).
    """

    min_fraction: float = 0.5
    min_fleet: int = 4
    types: tuple[str, ...] = SYSTEMIC_TYPES
    mode: str = "link"

    def __post_init__(self) -> None:
        _number(self, "min_fraction", lo=0, hi=1)
        _integer(self, "min_fleet", 1)
        allowed = [t for t in ANOMALY_TYPES if t != "systemic"]
        if not isinstance(self.types, tuple) or any(t not in allowed for t in self.types):
            _fail(self, "types", self.types, f"a tuple of {', '.join(allowed)}")
        if self.mode not in ("link", "suppress"):
            _fail(self, "mode", self.mode, "'link' or 'suppress'")


@dataclasses.dataclass(frozen=True)
class EpisodeParams:
    """Consecutive alerts of one (sensor, type, metric) become one episode.

    Two alerts are consecutive when the second comes at most
    ``max_gap_steps`` steps after the first (a step: the sensor's sample
    interval for per-reading alerts, the hop for per-window ones), which
    bridges a dropped reading or a window that dipped under a threshold.
    """

    max_gap_steps: float = 3.0

    def __post_init__(self) -> None:
        _number(self, "max_gap_steps", lo=1)


@dataclasses.dataclass(frozen=True)
class DetectionParams:
    """Everything the detection pipeline needs, one field per detector family."""

    windows: WindowParams = WindowParams()
    spike: SpikeParams = SpikeParams()
    history: HistoryParams = HistoryParams()
    multivariate: MultivariateParams = MultivariateParams()
    sensor_fault: SensorFaultParams = SensorFaultParams()
    drift: DriftParams = DriftParams()
    flatline: FlatlineParams = FlatlineParams()
    thresholds: ThresholdParams = ThresholdParams()
    silence: SilenceParams = SilenceParams()
    systemic: SystemicParams = SystemicParams()
    episodes: EpisodeParams = EpisodeParams()
    # what each sensor is (ranges, alarms, interval, group); the default treats every sensor as the simulator's
    registry: SensorRegistry = SensorRegistry()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            expected = f.default.__class__
            if not isinstance(v, expected):
                _fail(self, f.name, v, f"a {expected.__name__}")


@dataclasses.dataclass(frozen=True)
class Context:
    """Lookback each input of :func:`~iot_platform.core.detectors.pipeline.detect_points` needs before emit_start."""

    readings_s: int  # readings (also enough for compute_window_stats)
    window_stats_s: int  # window_stats rows (window_end after emit_start - this)


def context_seconds(params: DetectionParams = DetectionParams(), max_interval_s: float | None = None) -> Context:
    """The context a slice needs so that its results equal the full-day run's.

    For sensors sampling at most every ``max_interval_s`` (default
    ``params.windows.max_interval_s``; a fleet known to sample at 1 Hz can ask
    for far less). Readings: the window of the slowest sensor plus the spike
    detector's trailing window, one pane and one tick (the systemic check of
    the first tick looks back a hop). Window stats: the drift CUSUM's memory
    and the silence horizon.
    """
    w = params.windows
    iv_s = w.max_interval_s if max_interval_s is None else min(max_interval_s, w.max_interval_s)
    iv = max(round(iv_s * US), 1_000)
    hop, length = (int(x) for x in geometry(iv, w))
    spike = w.hop_us + hop + max(length, params.spike.location_subwindows * hop) + math.ceil(
        params.spike.max_gap_intervals * iv
    )
    silence = max(round(params.silence.min_silence_s * US), params.silence.missed_samples * iv)
    # slow sensors' trailing history (only needed when the fleet has sensors too slow for the window warm-up)
    slow = int(expected_readings(length, iv)) < w.min_readings
    history = (params.history.history_s * US + w.hop_us) if slow else 0
    mv = params.multivariate
    multivariate = (mv.fit_blocks + 1) * mv.block_s * US if mv.enabled else 0
    # the flatline's look-back (the window, or half the history for slow sensors) and one run before it
    slow_look = params.history.history_s * US // 2 if slow else length
    flat = slow_look + (params.flatline.min_readings + 1) * iv
    readings_us = max(length, spike, silence, history, multivariate, flat)
    return Context(
        readings_s=-(-readings_us // US),
        # one hop of the slowest sensor more: the drift's stuck-window test compares a window with the one before
        window_stats_s=max(params.drift.memory_s, params.silence.horizon_s, params.silence.critical_after_s)
        + w.hop_s + (hop // US),
    )
