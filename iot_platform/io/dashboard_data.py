"""What the dashboard shows, read from the lake with DuckDB: never a write, never a lock.

Everything here is a read of Parquet files (and of two small JSON/SQLite files
for freshness and capture health): a local lake's with DuckDB's ``read_parquet``,
an object store's as pyarrow datasets registered on the query's cursor
(:func:`iot_platform.io.lake_store.store_dataset`), never through DuckDB's
Python-filesystem bridge, which returned corrupt bytes under load.

The fleet overview needs each sensor's latest reading; rescanning a day of
1,000 sensors every few seconds would cost seconds, so per-file aggregates are
cached by (path, size, mtime): a refresh reads only the micro-batch parts
written since the previous one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from iot_platform.core.schemas import METRICS
from iot_platform.io.alert_store import STORE_FILE
from iot_platform.io.commit import last_commit
from iot_platform.io.lake import TABLES, open_lake, read_metadata
from iot_platform.io.lake_store import StoreFile, store_dataset
from iot_platform.core.calendar import DAY_US, US

UNTIL_KEY = "iot.until_us"
# A chart row draws at most MAX_POINTS readings: raw while a span holds no more at 1 Hz (25 min),
# averaged into MAX_POINTS buckets up to READINGS_SPAN_US (the window band keeps the extremes, the
# markers the anomalies), window statistics alone beyond (scanning a week of raw readings for one
# sensor costs a second or more). More points only cost the browser: 3,600 per row take Plotly
# about a second longer to draw on a busy 2-core machine.
MAX_POINTS = 1500
RAW_SPAN_US = MAX_POINTS * US
READINGS_SPAN_US = 86_400 * US


def _files_sql(files: list[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


_SRC = "{src}"  # where a query's SQL reads the files it was given


@dataclasses.dataclass(frozen=True)
class Freshness:
    newest_reading_us: int | None
    last_batch_us: int | None  # when the last micro-batch committed (file time of its state)
    batches: int | None
    detection_until_us: int | None  # how far window statistics and anomalies are computed
    open_alarms: int | None  # None: alerting never ran


class DashboardData:
    """Read access to one data root; safe to share between the web server's threads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.lake = open_lake(self.root)
        self._con = duckdb.connect()
        self._con.execute("SET threads TO 2")
        self._lock = threading.Lock()
        self._last_cache: dict[str, tuple[str, pa.Table]] = {}

    def _sql(self, sql: str, params: list | None = None, *, table: str = "", files: list | None = None,
             union_by_name: bool = True) -> pa.Table:  # fmt: skip
        """Run ``sql``, where ``{src}`` reads ``files`` of lake table ``table``."""
        with self._lock:  # one connection, many threads: a cursor each
            cur = self._con.cursor()
        try:
            if files is not None:
                sql = sql.replace(_SRC, self._source(cur, table, files, union_by_name))
            return cur.sql(sql, params=params or None).to_arrow_table()
        finally:
            cur.close()

    @staticmethod
    def _source(cur: duckdb.DuckDBPyConnection, table: str, files: list, union_by_name: bool) -> str:
        if files and isinstance(files[0], StoreFile):
            # registered on this query's own cursor, gone when it closes: the columns are the
            # table's (a file without one reads it as nulls), so no footer is fetched up front
            cur.register("lake_files", store_dataset(files, TABLES[table]))
            return "lake_files"
        return f"read_parquet({_files_sql(files)}{', union_by_name=true' if union_by_name else ''})"

    # -- the fleet -----------------------------------------------------------------------------
    def reading_days(self) -> list[dt.date]:
        return self.lake.days("readings")

    def last_readings(self) -> pa.Table:
        """One row per sensor seen in the newest two days: ``sensor_id``, ``last_ts`` (µs) and
        the metrics of that reading."""
        files = [f for d in self.reading_days()[-2:] for f in self.lake.files("readings", d)]
        cols = ", ".join(f"arg_max({m}, ts) AS {m}" for m in METRICS)
        parts = []
        live = set()
        for f in files:
            st = f.stat()
            ident = f"{st.st_size}:{st.st_mtime_ns}"
            live.add(str(f))
            hit = self._last_cache.get(str(f))
            if hit is None or hit[0] != ident:
                t = self._sql(f"SELECT sensor_id, max(epoch_us(ts)) AS last_ts, {cols} FROM {_SRC} GROUP BY 1",
                              table="readings", files=[f], union_by_name=False)  # fmt: skip
                self._last_cache[str(f)] = hit = (ident, t)
            parts.append(hit[1])
        for gone in set(self._last_cache) - live:
            del self._last_cache[gone]
        if not parts:
            return pa.table({"sensor_id": pa.array([], pa.string()), "last_ts": pa.array([], pa.int64()),
                             **{m: pa.array([], pa.float64()) for m in METRICS}})  # fmt: skip
        both = pa.concat_tables(parts)
        with self._lock:
            cur = self._con.cursor()
        try:
            cur.register("parts", both)
            agg = ", ".join(f"arg_max({m}, last_ts) AS {m}" for m in METRICS)
            return cur.sql(f"SELECT sensor_id, max(last_ts) AS last_ts, {agg} FROM parts GROUP BY 1 ORDER BY 1").to_arrow_table()
        finally:
            cur.close()

    def recent_episodes(self) -> pa.Table:
        """Anomaly episodes of the newest two days (sensor_id, severity, end_ts µs, ...)."""
        days = self.lake.days("anomalies")[-2:]
        files = [f for d in days for f in self.lake.files("anomalies", d)]
        if not files:
            return pa.table({"sensor_id": pa.array([], pa.string()), "severity": pa.array([], pa.string()),
                             "end_ts": pa.array([], pa.int64())})  # fmt: skip
        return self._sql(f"SELECT sensor_id, severity, anomaly_type, epoch_us(end_ts) AS end_ts FROM {_SRC}",
                         table="anomalies", files=files, union_by_name=False)  # fmt: skip

    def freshness(self, newest_reading_us: int | None) -> Freshness:
        last = last_commit(self.lake)
        last_batch, batches = last if last is not None else (None, None)
        until = None
        for day in self.lake.days("anomalies")[-1:]:
            for f in self.lake.files("anomalies", day):
                raw = read_metadata(f).get(UNTIL_KEY)
                if raw is not None:
                    until = max(until or 0, int(raw))
        return Freshness(newest_reading_us, last_batch, batches, until, self.open_alarms())

    def open_alarm_list(self, limit: int = 10) -> list[dict]:
        """The newest open alarms (critical first): what the alert store is telling people about."""
        path = self.root / STORE_FILE
        if not path.exists():
            return []
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute(
                "SELECT alarm_id, sensor_id, alarm_type, metric, severity, status, first_seen_us, message FROM alarms "
                "WHERE status <> 'cleared' ORDER BY severity = 'critical' DESC, first_seen_us DESC LIMIT ?", [limit])  # fmt: skip
            return [dict(r) for r in rows]
        except sqlite3.Error:
            return []
        finally:
            con.close()

    def open_alarms(self) -> int | None:
        path = self.root / STORE_FILE
        if not path.exists():
            return None
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            return int(con.execute("SELECT count(*) FROM alarms WHERE status <> 'cleared'").fetchone()[0])
        except sqlite3.Error:
            return None
        finally:
            con.close()

    def capture_health(self) -> list[dict]:
        """The captures' latest periodic metrics (``landing/_metrics/<stream>.json``)."""
        d = self.root / "landing" / "_metrics"
        out = []
        for p in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                out.append(json.loads(p.read_text()))
            except (ValueError, OSError):
                continue  # being replaced right now: the next refresh reads it
        return out

    # -- one sensor -----------------------------------------------------------------------------
    def _day_files(self, table: str, start_us: int, end_us: int) -> list[Path]:
        first = dt.datetime.fromtimestamp(start_us / US, dt.UTC).date()
        last = dt.datetime.fromtimestamp((end_us - 1) / US, dt.UTC).date()
        return [f for d in self.lake.days(table) if first <= d <= last for f in self.lake.files(table, d)]

    def sensor_readings(self, sensor: str, start_us: int, end_us: int) -> pa.Table:
        """Readings of ``sensor`` in ``[start, end)``: raw up to 25 min, averaged into MAX_POINTS buckets up
        to a day, none beyond (the chart then draws window statistics only)."""
        files = self._day_files("readings", start_us, end_us) if end_us - start_us <= READINGS_SPAN_US else []
        if not files:
            return pa.table({"ts": pa.array([], pa.int64()), **{m: pa.array([], pa.float64()) for m in METRICS}})
        where = "sensor_id = ? AND epoch_us(ts) >= ? AND epoch_us(ts) < ?"
        if end_us - start_us <= RAW_SPAN_US:
            return self._sql(f"SELECT epoch_us(ts) AS ts, {', '.join(METRICS)} FROM {_SRC} WHERE {where} ORDER BY ts",
                             [sensor, start_us, end_us], table="readings", files=files)  # fmt: skip
        bucket = -(-(end_us - start_us) // MAX_POINTS)
        avg = ", ".join(f"avg({m}) AS {m}" for m in METRICS)
        return self._sql(
            f"SELECT (epoch_us(ts) - ?) // {bucket} * {bucket} + ? AS ts, {avg} FROM {_SRC} WHERE {where} GROUP BY 1 ORDER BY 1",
            [start_us, start_us, sensor, start_us, end_us], table="readings", files=files,
        )

    def sensor_windows(self, sensor: str, start_us: int, end_us: int) -> pa.Table:
        """Window statistics of ``sensor`` ending in ``(start, end]``; over long spans merged into at
        most MAX_POINTS buckets (mean of the means, lowest minimum, highest maximum)."""
        files = self._day_files("window_stats", start_us, end_us + DAY_US)
        if not files:
            return pa.table({"window_end": pa.array([], pa.int64())})
        where = "sensor_id = ? AND epoch_us(window_end) > ? AND epoch_us(window_end) <= ?"
        means = ("temp_mean", "temp_std", "humidity_mean", "pressure_mean", "vibration_mean", "battery_level")
        if (end_us - start_us) // (60 * US) <= MAX_POINTS:
            cols = ", ".join((*means, "temp_min", "temp_max", "vibration_max"))
            return self._sql(f"SELECT epoch_us(window_end) AS window_end, n_readings, {cols} FROM {_SRC} WHERE {where} ORDER BY 1",
                             [sensor, start_us, end_us], table="window_stats", files=files)  # fmt: skip
        bucket = -(-(end_us - start_us) // MAX_POINTS)
        agg = ", ".join([*(f"avg({c}) AS {c}" for c in means), "min(temp_min) AS temp_min", "max(temp_max) AS temp_max",
                         "max(vibration_max) AS vibration_max"])  # fmt: skip
        return self._sql(
            f"SELECT max(epoch_us(window_end)) AS window_end, sum(n_readings)::BIGINT AS n_readings, {agg} FROM {_SRC} "
            f"WHERE {where} GROUP BY (epoch_us(window_end) - ? - 1) // {bucket} ORDER BY 1",
            [sensor, start_us, end_us, start_us], table="window_stats", files=files,
        )

    def sensor_episodes(self, sensor: str, start_us: int, end_us: int) -> pa.Table:
        files = self._day_files("anomalies", start_us, end_us + DAY_US)
        if not files:
            return pa.table({"anomaly_id": pa.array([], pa.string())})
        return self._sql(
            "SELECT anomaly_id, anomaly_type, severity, metric, epoch_us(start_ts) AS start_ts, epoch_us(end_ts) AS end_ts, "
            f"value, score, message FROM {_SRC} "
            "WHERE sensor_id IN (?, '__fleet__') AND epoch_us(end_ts) >= ? AND epoch_us(start_ts) < ? ORDER BY start_ts",
            [sensor, start_us, end_us], table="anomalies", files=files,
        )
