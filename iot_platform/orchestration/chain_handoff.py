"""Days whose window_stats and anomalies a run's `readings` step built already, for its detection step.

When one run materializes `readings` and both `window_stats` and `anomalies`
for the same days (a backfill of the lake), the readings step computes the
derived tables in the same pass (:mod:`iot_platform.io.chain`) and leaves
here, per day, the UI metadata of both and the identity of every file they
were computed from and written to. The detection step of the same run then
reports those days instead of computing them again, but only while every one
of those files is unchanged (a micro-batch or another build in between: the
day is computed as usual). Each asset is still materialized by its own step.

The same pass runs each day's checks over the rows it writes: the readings
audits (:mod:`iot_platform.io.pass_audits`), the window_stats and anomalies
checks over the tables in memory. The run's check steps report a day that
passed from here while the files the check reads are unchanged, and read the
files back for any other day.

Kept on this machine (``<data>/lake/_state/chain_handoff``): a step on
another machine finds nothing and computes the day itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
import time
from pathlib import Path

from iot_platform.io.audits import AuditResult
from iot_platform.io.chain import derived_inputs
from iot_platform.io.commit import day_lock
from iot_platform.io.downstream import DownstreamSettings
from iot_platform.io.fsutil import fsync_path
from iot_platform.io.lake import Lake
from iot_platform.io.pass_audits import READINGS_AUDITED, Vouched, table_files

_KEEP_S = 86_400  # a crashed run's handoff is removed by the next run after this long


@dataclasses.dataclass(frozen=True)
class HandedDay:
    window_metadata: dict
    anomaly_metadata: dict
    summary: str  # the detection step's log line
    inputs: list[tuple[str, int, int]] | None  # None: never current (the day's files are not all the pass's)


def _path(lake: Lake, run_id: str, kind: str = "") -> Path:
    return Path(lake.root) / "lake" / "_state" / "chain_handoff" / f"{run_id}{kind}.pkl"


def save(lake: Lake, run_id: str, days: dict[dt.date, HandedDay], checked: dict[str, dict[dt.date, Vouched]] | None = None) -> None:
    """Hand over the days' derived tables (for the detection step) and, per table, the results of the days whose
    checks passed in the pass (for the table's check step)."""
    _save(_path(lake, run_id), days)
    for table, vouched in (checked or {}).items():
        _save(_path(lake, run_id, f".{table}_checks"), {d: v for d, v in vouched.items() if v.results is not None})


def _save(path: Path, days: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob("*.pkl"):
        if time.time() - old.stat().st_mtime > _KEEP_S:
            old.unlink(missing_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(days))
    fsync_path(tmp)
    tmp.replace(path)


def take_checks(lake: Lake, run_id: str, table: str, days: list[dt.date]) -> dict[dt.date, dict[str, AuditResult]]:
    """The check results of ``table`` handed over for ``days`` whose files are unchanged; the handoff is removed."""
    path = _path(lake, run_id, f".{table}_checks")
    if not path.exists():
        return {}
    handed: dict[dt.date, Vouched] = pickle.loads(path.read_bytes())  # our own file, written by this run
    path.unlink(missing_ok=True)
    read = READINGS_AUDITED if table == "readings" else (table,)
    return {day: handed[day].results for day in days if day in handed and table_files(lake, day, read) == handed[day].files}


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
