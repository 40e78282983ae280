"""Audits of lake partitions: each is a query that returns the bad rows.

Used by the Dagster asset checks. They run in an in-memory DuckDB over the
partition's Parquet files, so they hold no lock and scale with the day.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
from collections.abc import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core.schemas import READINGS, VALID_RANGE
from iot_platform.io import day_pool
from iot_platform.io.day_layout import tail_start_us
from iot_platform.io.lake import Lake
from iot_platform.io.lake_store import parquet_scan
from iot_platform.io.objstore import ObjectStore
from iot_platform.io.parquet_files import parquet_source

EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class AuditResult:
    name: str
    n_bad: int
    examples: list[dict]

    @property
    def passed(self) -> bool:
        return self.n_bad == 0


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()  # an object store's files: Arrow datasets (parquet_scan)
    con.execute("SET threads TO 2")
    return con


def _run(con: duckdb.DuckDBPyConnection, name: str, bad_rows_sql: str, params: list | None = None) -> AuditResult:
    n = con.execute(f"SELECT count(*) FROM ({bad_rows_sql})", params or []).fetchone()[0]
    examples = []
    if n:
        rel = con.execute(f"SELECT * FROM ({bad_rows_sql}) LIMIT {EXAMPLES}", params or [])
        cols = [d[0] for d in rel.description]
        examples = [{c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(cols, row)} for row in rel.fetchall()]
    return AuditResult(name, int(n), examples)


def _files_sql(con: duckdb.DuckDBPyConnection, lake: Lake, table: str, day: dt.date) -> str | None:
    files = lake.files(table, day)
    if not files:
        return None
    return parquet_scan(con, files)


READINGS_AUDITS = ("schema", "unique_key", "no_null_keys", "ts_in_partition", "plausible")


def audit_readings(lake: Lake, day: dt.date) -> dict[str, AuditResult]:
    """Every audit of one `readings` partition, from one scan (an absent partition fails them all).

    The counts come from one DuckDB pass over the day; uniqueness from the
    files' order when each is sorted by (sensor_id, ts) (before the day's tail and within it)
    with no key twice and the files hold disjoint sensors (a backfilled or finalized day: one
    file), else from a GROUP BY. Examples are only queried for a failing audit.
    """
    con = _connect()
    src = _files_sql(con, lake, "readings", day)
    labels = _files_sql(con, lake, "fault_labels", day)  # both sources first: registering one needs an idle connection
    if src is None:
        missing = AuditResult("exists", 1, [{"problem": f"no readings files for {day}"}])
        return {name: dataclasses.replace(missing, name=name) for name in READINGS_AUDITS}
    got = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    got_cols = [(r[0], r[1]) for r in got]
    want = [("sensor_id", "VARCHAR"), ("ts", "TIMESTAMP WITH TIME ZONE")] + [
        (f.name, "DOUBLE") for f in READINGS if f.type == pa.float64()
    ]
    missing = [f"{c} {t}" for c, t in want if (c, t) not in got_cols]
    results = {"schema": AuditResult("schema", len(missing), [{"missing_or_wrong_type": m} for m in missing])}
    con.execute(f"CREATE TEMP VIEW r AS SELECT * FROM {src}")
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    outside = " OR ".join(f"{m} < {lo} OR {m} > {hi}" for m, (lo, hi) in VALID_RANGE.items())
    sql = {
        "no_null_keys": "SELECT * FROM r WHERE sensor_id IS NULL OR ts IS NULL",
        "ts_in_partition": "SELECT * FROM r WHERE ts < $1 OR ts >= $2",
    }
    # the one scan: null keys, rows outside the day, and the (few) physically impossible rows kept aside
    con.execute(f"CREATE TEMP TABLE impossible AS SELECT * FROM r WHERE {outside}")
    n_null, n_out = con.execute(
        "SELECT count(*) FILTER (WHERE sensor_id IS NULL OR ts IS NULL), count(*) FILTER (WHERE ts < $1 OR ts >= $2) FROM r",
        [start, end],
    ).fetchone()
    for name, n in (("no_null_keys", n_null), ("ts_in_partition", n_out)):
        results[name] = _examples(con, name, int(n), sql[name], [start, end] if "$1" in sql[name] else [])
    dup_sql = "SELECT sensor_id, ts, count(*) AS n FROM r GROUP BY ALL HAVING count(*) > 1"
    if _sorted_and_disjoint(lake.files("readings", day), day):
        results["unique_key"] = AuditResult("unique_key", 0, [])
    else:
        results["unique_key"] = _run(con, "unique_key", dup_sql)
    results["plausible"] = _plausible(con, labels)
    return results


def audit_readings_days(lake: Lake, days: list[dt.date], processes: int = 1) -> Iterator[tuple[dt.date, dict[str, AuditResult]]]:
    """:func:`audit_readings` of each day, in day order; days side by side in worker processes when ``processes`` > 1."""
    if processes <= 1 or len(days) <= 1:
        # two days at a time on threads: the order pass (pyarrow) of one overlaps the DuckDB scans of the other
        with cf.ThreadPoolExecutor(max_workers=2) as pool:
            yield from zip(days, pool.map(lambda d: audit_readings(lake, d), days))
        return
    tasks = ((str(lake.root), lake.store, day) for day in days)
    yield from zip(days, day_pool.map_in_workers(_audit_in_worker, tasks, processes))


def _audit_in_worker(root: str, store: ObjectStore | None, day: dt.date) -> dict[str, AuditResult]:
    return audit_readings(day_pool.worker_lake(root, store), day)


def _examples(con: duckdb.DuckDBPyConnection, name: str, n: int, sql: str, params: list) -> AuditResult:
    if n == 0:
        return AuditResult(name, 0, [])
    rel = con.execute(f"SELECT * FROM ({sql}) LIMIT {EXAMPLES}", params)
    cols = [d[0] for d in rel.description]
    return AuditResult(name, n, [{c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(cols, row)} for row in rel.fetchall()])


def _sorted_and_disjoint(files: list, day: dt.date) -> bool:
    """Each file strictly increasing in (sensor_id, ts) before the day's tail and within it, and no
    sensor in two files: then no key repeats.

    A compacted day puts each chunk's last hour after the chunk (io.day_layout), so a file is
    checked as two streams, its rows before :func:`tail_start_us` and its rows from it on, in file
    order: keys of the two cannot meet (their ts differ), and a file sorted throughout (an older
    one, a part) passes the same test. sensor_id is read dictionary-encoded, so the test runs on
    integer codes and a few distinct names per chunk, never on millions of strings.
    """
    cut = tail_start_us(day)
    seen: set[str] = set()
    for f in files:
        streams = (_Stream(), _Stream())
        # streamed a row group at a time: memory follows the row group, not the day
        batches = pq.ParquetFile(parquet_source(f), read_dictionary=["sensor_id"]).iter_batches(batch_size=1 << 20, columns=["sensor_id", "ts"])
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if batch.column(0).null_count or batch.column(1).null_count:
                return False
            in_tail = pc.greater_equal(pc.cast(batch.column(1), pa.int64()), cut)
            for stream, mask in zip(streams, (pc.invert(in_tail), in_tail), strict=True):
                if not stream.extend(batch.filter(mask)):
                    return False
        names = set(streams[0].names) | set(streams[1].names)
        if seen & names:
            return False
        seen.update(names)
    return True


class _Stream:
    """Rows seen so far of one strictly increasing (sensor_id, ts) sequence."""

    def __init__(self) -> None:
        self.names: list[str] = []  # the sensors in order of appearance
        self.last_ts: int | None = None

    def extend(self, batch: pa.RecordBatch) -> bool:
        """Take the next rows; False if they break the order."""
        if batch.num_rows == 0:
            return True
        sid, ts = batch.column(0), pc.cast(batch.column(1), pa.int64())
        codes = sid.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dictionary = sid.dictionary.to_pylist()
        step = np.diff(codes)
        if (step < 0).any():
            return False
        run_names = [dictionary[c] for c in codes[np.r_[0, np.flatnonzero(step) + 1]]]
        v = ts.to_numpy()
        names = self.names
        # within a sensor's run, ts strictly increasing; across batches, names continue in order
        if ((step == 0) & (np.diff(v) <= 0)).any():
            return False
        if names and (run_names[0] < names[-1] or (run_names[0] == names[-1] and v[0] <= self.last_ts)):
            return False
        if any(b <= a for a, b in zip(run_names, run_names[1:])):
            return False
        names += run_names[1:] if names and run_names[0] == names[-1] else run_names
        self.last_ts = int(v[-1])
        return True


def _plausible(con: duckdb.DuckDBPyConnection, labels: str | None) -> AuditResult:
    """Readings outside the valid range that no labelled fault accounts for.

    On the simulated fleet every impossible value is a labelled sensor fault;
    on real sensors a hit here is a broken sensor worth a look.
    """
    if labels:
        con.execute(f"CREATE TEMP VIEW l AS SELECT * FROM {labels} WHERE fault_type = 'sensor_fault'")
    else:
        con.execute("CREATE TEMP VIEW l AS SELECT NULL::VARCHAR AS sensor_id, NULL::TIMESTAMPTZ AS start_ts, NULL::TIMESTAMPTZ AS end_ts WHERE false")
    sql = (
        "SELECT * FROM impossible AS r WHERE NOT EXISTS ("
        "SELECT 1 FROM l WHERE l.sensor_id = r.sensor_id AND r.ts >= l.start_ts AND r.ts < l.end_ts)"
    )
    return _run(con, "plausible", sql)
