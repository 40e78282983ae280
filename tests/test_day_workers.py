"""A whole-day build computes chunks of sensors on two threads: same bytes as one thread."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from iot_platform.core.simulator import FleetParams
from iot_platform.io.downstream import DownstreamSettings, compute_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import Lake

DAY = dt.date(2024, 1, 3)


def test_two_workers_give_the_same_day_as_one(lake: Lake):
    fleet = FleetParams(seed=11, n_sensors=5, sample_interval_s=10.0)
    for day in (DAY - dt.timedelta(days=1), DAY):
        build_readings_day(lake, fleet, day)
    one = DownstreamSettings(fleet=fleet, sensors_per_chunk=1, workers=1)
    runs = [compute_day(lake, DAY, dataclasses.replace(one, workers=n)) for n in (1, 2, 3)]
    for run in runs[1:]:
        assert run.window_stats.equals(runs[0].window_stats)
        assert run.points.equals(runs[0].points)  # in the same order, not only the same set
        assert run.anomalies.equals(runs[0].anomalies)
    assert (runs[0].window_stats.num_rows, runs[0].points.num_rows, runs[0].anomalies.num_rows) == (7037, 338, 44)


def test_workers_must_be_a_positive_integer():
    from iot_platform.core.detectors.pipeline import run_day_chunked

    with pytest.raises(ValueError, match="workers=0 is invalid; expected an integer >= 1"):
        run_day_chunked([], None, day=DAY, workers=0)
