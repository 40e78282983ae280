"""The readings audits of a day from its rows as they are written: the chain's one pass, no read-back.

:func:`iot_platform.io.audits.audit_readings` reads a day's files back and
scans them (about 0.6 CPU-s for a day of 100 sensors). When the chain builds
a day (:mod:`iot_platform.io.chain`), every validated chunk goes through
:meth:`PassAudit.add` on its way to the file, so the same figures cost a few
array passes over rows already in memory. Only a clean day is vouched for:
every audit passing, each physically impossible value inside a labelled
sensor fault. Anything else (a null key, a row outside the day, rows out of
order, an unexplained value) gives None, and the check reads the files back
for the exact counts and examples, as without the chain.

The result holds for the files it was computed with: it is kept only if each
table the pass wrote lists just the file the pass committed (a writer that
shares no lock, on another machine, may have committed a part since:
:func:`own_files`), and the check uses it only while the day's readings and
fault_labels files are unchanged (name, size, mtime; :func:`table_files`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.calendar import DAY_US, day_start_us
from iot_platform.core.schemas import READINGS, VALID_RANGE
from iot_platform.io.audits import READINGS_AUDITS, AuditResult
from iot_platform.io.lake import Lake

# what the schema audit asks of the files (audit_readings' DESCRIBE, in Arrow's types)
_WANT = {"sensor_id": pa.string(), "ts": pa.timestamp("us", tz="UTC")} | {
    f.name: pa.float64() for f in READINGS if f.type == pa.float64()
}


READINGS_AUDITED = ("readings", "fault_labels")  # what the readings audits read


def table_files(lake: Lake, day: dt.date, tables: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(file, size, mtime) of ``day``'s files of ``tables``: while they are unchanged, so are checks over them."""
    return _stat([f for t in tables for f in lake.files(t, day)])


def _stat(files: list[Path]) -> list[tuple[str, int, int]]:
    return [(str(f), (st := f.stat()).st_size, st.st_mtime_ns) for f in files]


def own_files(lake: Lake, day: dt.date, tables: tuple[str, ...], written: dict[str, Path]) -> list[tuple[str, int, int]] | None:
    """:func:`table_files` of ``tables``, or None if a table in ``written`` lists anything but the file written
    to it (another writer committed since: what was computed from the rows written is not what is stored)."""
    listed = {t: lake.files(t, day) for t in tables}
    if any(t in written and [f.name for f in listed[t]] != [written[t].name] for t in tables):
        return None
    return _stat([f for t in tables for f in listed[t]])


@dataclasses.dataclass(frozen=True)
class Vouched:
    """A day's check results computed in the pass that wrote it (None: read the files back), and the files."""

    results: dict[str, AuditResult] | None
    files: list[tuple[str, int, int]]  # table_files right after the write, the table's lock held


class PassAudit:
    """The readings audits of one day, fed the day's validated chunks in the order they are written."""

    def __init__(self, day: dt.date, schema: pa.Schema):
        self.start = day_start_us(day)
        self.clean = all(name in schema.names and schema.field(name).type == t for name, t in _WANT.items())
        self.seen: set[str] = set()  # sensors of the chunks so far: no sensor in two chunks
        self.impossible: list[pa.Table] = []  # (sensor_id, ts) of values outside VALID_RANGE

    def add(self, rows: pa.Table) -> None:
        """The next chunk written (a few sensors, sorted by (sensor_id, ts) for a clean day)."""
        if not self.clean or rows.num_rows == 0:
            return
        sid, ts_col = rows["sensor_id"], rows["ts"]
        if sid.null_count or ts_col.null_count:
            self.clean = False
            return
        ts = pc.cast(ts_col, pa.int64()).to_numpy()
        if ts.min() < self.start or ts.max() >= self.start + DAY_US:
            self.clean = False
            return
        n = len(ts)
        change = pc.not_equal(sid.slice(1), sid.slice(0, n - 1)).to_numpy(zero_copy_only=False) if n > 1 else np.zeros(0, bool)
        starts = np.flatnonzero(change) + 1
        names = pc.take(sid, pa.array(np.r_[0, starts])).to_pylist()
        step = np.diff(ts)
        step[starts - 1] = 1  # a sensor's first row may have any ts
        ordered = all(a < b for a, b in zip(names, names[1:])) and not self.seen.intersection(names) and bool((step > 0).all())
        if not ordered:  # the same sensor twice, or a repeated or unordered key: the files tell
            self.clean = False
            return
        self.seen.update(names)
        for m, (lo, hi) in VALID_RANGE.items():
            col = rows[m]
            if col.null_count == len(col):
                continue
            lo_hi = pc.min_max(col)  # NaN skipped: asked for below
            if lo <= lo_hi["min"].as_py() and lo_hi["max"].as_py() <= hi and not pc.any(pc.is_nan(col)).as_py():
                continue
            v = col.to_numpy(zero_copy_only=False)
            present = ~pc.is_null(col, nan_is_null=False).to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                bad = present & ((v < lo) | (v > hi) | np.isnan(v))  # DuckDB's order puts NaN above every value
            self.impossible.append(rows.select(["sensor_id", "ts"]).filter(pa.array(bad)))

    def results(self, labels: pa.Table) -> dict[str, AuditResult] | None:
        """Every audit of the day, passed, or None when one may not pass (the files tell how)."""
        if not self.clean:
            return None
        if self.impossible:
            bad = pa.concat_tables(self.impossible)
            if not _explained(bad, labels).all():
                return None
        return {name: AuditResult(name, 0, []) for name in READINGS_AUDITS}


def _explained(bad: pa.Table, labels: pa.Table) -> np.ndarray:
    """Whether each (sensor_id, ts) lies in a labelled sensor fault of its sensor (audit_readings' plausible)."""
    sid = np.asarray(bad["sensor_id"].to_pylist(), dtype=object)
    ts = pc.cast(bad["ts"], pa.int64()).to_numpy()
    covered = np.zeros(len(ts), dtype=bool)
    faults = labels.filter(pc.equal(labels["fault_type"], "sensor_fault")).select(["sensor_id", "start_ts", "end_ts"]).drop_null()
    for s, a, b in zip(
        faults["sensor_id"].to_pylist(),
        pc.cast(faults["start_ts"], pa.int64()).to_pylist(),
        pc.cast(faults["end_ts"], pa.int64()).to_pylist(),
        strict=True,
    ):  # a day's few sensor faults, each over all the day's impossible values
        covered |= (sid == s) & (ts >= a) & (ts < b)
    return covered
