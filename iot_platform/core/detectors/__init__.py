"""Anomaly detectors over readings and window statistics: one module per detector family.

Pure functions over Arrow tables; parameters in frozen, self-validating
dataclasses (:mod:`.params`). The pipeline (:mod:`.pipeline`) runs them in two
stages: range-local alert points (:func:`detect_points`), then episodes
(:func:`to_episodes`). :func:`run_day` does a whole daily partition.
"""

from iot_platform.core.detectors.drift import drift_baseline
from iot_platform.core.detectors.episodes import to_episodes
from iot_platform.core.detectors.inputs import BASELINE
from iot_platform.core.detectors.params import (
    Context,
    DetectionParams,
    DriftParams,
    EpisodeParams,
    FlatlineParams,
    HistoryParams,
    MultivariateParams,
    SensorFaultParams,
    SilenceParams,
    SpikeParams,
    SystemicParams,
    ThresholdParams,
    context_seconds,
)
from iot_platform.core.detectors.pipeline import (
    DETECTORS,
    DayRun,
    detect_points,
    detect_sensor_points,
    run_day,
    run_day_chunked,
)
from iot_platform.core.detectors.points import POINTS
from iot_platform.core.detectors.silence import FLEET

__all__ = [
    "BASELINE",
    "DETECTORS",
    "FLEET",
    "POINTS",
    "Context",
    "DayRun",
    "DetectionParams",
    "DriftParams",
    "EpisodeParams",
    "FlatlineParams",
    "HistoryParams",
    "MultivariateParams",
    "SensorFaultParams",
    "SilenceParams",
    "SpikeParams",
    "SystemicParams",
    "ThresholdParams",
    "context_seconds",
    "detect_points",
    "detect_sensor_points",
    "drift_baseline",
    "run_day",
    "run_day_chunked",
    "to_episodes",
]
