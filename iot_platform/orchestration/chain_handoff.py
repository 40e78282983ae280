"""Days whose window_stats and anomalies a run's `readings` step built already, for its detection step.

When one run materializes `readings` and both `window_stats` and `anomalies`
for the same days (a backfill of the lake), the readings step computes the
derived tables in the same pass (:mod:`iot_platform.io.chain`) and leaves
here, per day, the UI metadata of both and the identity of every file they
were computed from and written to. The detection step of the same run then
reports those days instead of computing them again, but only while every one
of those files is unchanged (a micro-batch or another build in between: the
day is computed as usual). Each asset is still materialized by its own step.

Kept on this machine (``<data>/lake/_state/chain_handoff``): a step on
another machine finds nothing and computes the day itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import time
from pathlib import Path

from iot_platform.io.chain import derived_inputs
from iot_platform.io.commit import day_lock
from iot_platform.io.downstream import DownstreamSettings
from iot_platform.io.fsutil import fsync_path
from iot_platform.io.lake import Lake

_KEEP_S = 86_400  # a crashed run's handoff is removed by the next run after this long


@dataclasses.dataclass(frozen=True)
class HandedDay:
    window_metadata: dict
    anomaly_metadata: dict
    summary: str  # the detection step's log line
    inputs: list[tuple[str, int, int]]


def _path(lake: Lake, run_id: str) -> Path:
    return Path(lake.root) / "lake" / "_state" / "chain_handoff" / f"{run_id}.pkl"


def save(lake: Lake, run_id: str, days: dict[dt.date, HandedDay]) -> None:
    path = _path(lake, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("*.pkl"):
        if time.time() - old.stat().st_mtime > _KEEP_S:
            old.unlink(missing_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(days))
    fsync_path(tmp)
    tmp.replace(path)


def take(lake: Lake, run_id: str, days: list[dt.date], settings: DownstreamSettings) -> dict[dt.date, HandedDay]:
    """The handed-over days of ``days`` still current (each checked under its day lock); the handoff is removed."""
    path = _path(lake, run_id)
    if not path.exists():
        return {}
    handed: dict[dt.date, HandedDay] = pickle.loads(path.read_bytes())  # our own file, written by this run
    path.unlink(missing_ok=True)
    current = {}
    for day in days:
        h = handed.get(day)
        if h is None:
            continue
        with day_lock(lake, day):
            if derived_inputs(lake, day, settings) == h.inputs:
                current[day] = h
    return current
