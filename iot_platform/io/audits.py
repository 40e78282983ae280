"""Audits of lake partitions: each is a query that returns the bad rows.

Used by the Dagster asset checks. They run in an in-memory DuckDB over the
partition's Parquet files, so they hold no lock and scale with the day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import pyarrow as pa

from iot_platform.core.schemas import READINGS, VALID_RANGE
from iot_platform.io.lake import Lake

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
    con = duckdb.connect()
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


def _files_sql(lake: Lake, table: str, day: dt.date) -> str | None:
    files = lake.files(table, day)
    if not files:
        return None
    return "read_parquet([" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "], union_by_name=true)"


def audit_readings(lake: Lake, day: dt.date) -> list[AuditResult]:
    """The audits of one `readings` partition (an absent partition fails `exists`)."""
    src = _files_sql(lake, "readings", day)
    if src is None:
        return [AuditResult("exists", 1, [{"problem": f"no readings files for {day}"}])]
    con = _connect()
    results = []
    got = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    got_cols = [(r[0], r[1]) for r in got]
    want = [("sensor_id", "VARCHAR"), ("ts", "TIMESTAMP WITH TIME ZONE")] + [
        (f.name, "DOUBLE") for f in READINGS if f.type == pa.float64()
    ]
    missing = [f"{c} {t}" for c, t in want if (c, t) not in got_cols]
    results.append(AuditResult("schema", len(missing), [{"missing_or_wrong_type": m} for m in missing]))
    con.execute(f"CREATE TEMP VIEW r AS SELECT * FROM {src}")
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    results.append(
        _run(con, "unique_key", "SELECT sensor_id, ts, count(*) AS n FROM r GROUP BY ALL HAVING count(*) > 1")
    )
    results.append(_run(con, "no_null_keys", "SELECT * FROM r WHERE sensor_id IS NULL OR ts IS NULL"))
    results.append(_run(con, "ts_in_partition", "SELECT * FROM r WHERE ts < ? OR ts >= ?", [start, end]))
    return results


def audit_plausible(lake: Lake, day: dt.date) -> AuditResult:
    """Readings outside the valid range that no labelled fault accounts for.

    On the simulated fleet every impossible value is a labelled sensor fault;
    on real sensors a hit here is a broken sensor worth a look.
    """
    src = _files_sql(lake, "readings", day)
    if src is None:
        return AuditResult("plausible", 0, [])
    con = _connect()
    con.execute(f"CREATE TEMP VIEW r AS SELECT * FROM {src}")
    labels = _files_sql(lake, "fault_labels", day)
    if labels:
        con.execute(f"CREATE TEMP VIEW l AS SELECT * FROM {labels} WHERE fault_type = 'sensor_fault'")
    else:
        con.execute("CREATE TEMP VIEW l AS SELECT NULL::VARCHAR AS sensor_id, NULL::TIMESTAMPTZ AS start_ts, NULL::TIMESTAMPTZ AS end_ts WHERE false")
    outside = " OR ".join(f"{m} < {lo} OR {m} > {hi}" for m, (lo, hi) in VALID_RANGE.items())
    sql = (
        f"SELECT * FROM r WHERE ({outside}) AND NOT EXISTS ("
        "SELECT 1 FROM l WHERE l.sensor_id = r.sensor_id AND r.ts >= l.start_ts AND r.ts < l.end_ts)"
    )
    return _run(con, "plausible", sql)
