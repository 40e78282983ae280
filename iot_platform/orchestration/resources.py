"""Dagster resources: where the data lives and what the simulated fleet is.

Defaults come from environment variables (read here, at the edge) and can be
overridden per run in the launchpad; the core only ever sees plain values.
"""

from __future__ import annotations

import os
import time

import dagster as dg

from iot_platform.core.simulator import FleetParams
from iot_platform.io.lake import Lake, open_lake
from iot_platform.settings import data_dir


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is invalid; expected an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is invalid; expected a number") from None


class LakeResource(dg.ConfigurableResource):
    """The data root: the Parquet lake, the landing zone and the warehouse live under it."""

    data_dir: str

    @property
    def lake(self) -> Lake:
        return open_lake(self.data_dir)


class FleetResource(dg.ConfigurableResource):
    """The simulated fleet. ``n_sensors=0`` turns the simulator off (real sensors only)."""

    seed: int = 42
    n_sensors: int = 10
    sample_interval_s: float = 1.0

    def params(self) -> FleetParams | None:
        if self.n_sensors == 0:
            return None
        return FleetParams(seed=self.seed, n_sensors=self.n_sensors, sample_interval_s=self.sample_interval_s)


class ClockResource(dg.ConfigurableResource):
    """The time the micro-batch sensor sees. ``fixed_now_us=0`` (the default) is the real clock;
    tests and replays set it to drive a day through micro-batches deterministically."""

    fixed_now_us: int = 0

    def now_us(self) -> int:
        return self.fixed_now_us or time.time_ns() // 1000


class DetectionResource(dg.ConfigurableResource):
    """How windows are cut and when a batch may emit them; detector parameters keep their
    documented defaults (``core.detectors.params``)."""

    window_length_s: int = 300
    window_hop_s: int = 60
    min_readings: int = 30
    allowed_lateness_s: int = 30

    def settings(self, fleet: FleetParams | None, data_dir: str | os.PathLike[str] | None = None):
        """The detection settings; with ``data_dir``, sensors are judged by its registry (sensors.yaml)."""
        import dataclasses

        from iot_platform.core.detectors.params import DetectionParams
        from iot_platform.io.downstream import DownstreamSettings
        from iot_platform.io.registry import fleet_registry

        base = DetectionParams()
        if data_dir is not None:
            base = dataclasses.replace(base, registry=fleet_registry(data_dir, fleet))
        windows = dataclasses.replace(
            base.windows, length_s=self.window_length_s, hop_s=self.window_hop_s, min_readings=self.min_readings
        )
        return DownstreamSettings(
            params=dataclasses.replace(base, windows=windows), allowed_lateness_s=self.allowed_lateness_s, fleet=fleet
        )


def detection_from_env() -> DetectionResource:
    return DetectionResource(
        window_length_s=_env_int("IOT_WINDOW_LENGTH_S", 300),
        window_hop_s=_env_int("IOT_WINDOW_HOP_S", 60),
        allowed_lateness_s=_env_int("IOT_ALLOWED_LATENESS_S", 30),
    )


def lake_from_env() -> LakeResource:
    return LakeResource(data_dir=str(data_dir()))


def fleet_from_env() -> FleetResource:
    fleet = FleetResource(
        seed=_env_int("IOT_FLEET_SEED", 42),
        n_sensors=_env_int("IOT_FLEET_SIZE", 10),
        sample_interval_s=_env_float("IOT_SAMPLE_INTERVAL_S", 1.0),
    )
    fleet.params()  # validate now: a bad setting fails at load time with its name
    return fleet
