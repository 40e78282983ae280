"""One alerting pass over the lake: evaluate alarms, queue notifications, deliver, export.

Inputs come from the lake without touching it: the ``anomalies`` episodes of the
newest two days, how far detection has run (the ``iot.until_us`` metadata of the
newest ``anomalies`` partition), when the last micro-batch committed (the
modification time of ``lake/_state/micro_batch.json``) and each sensor's newest
reading (only readings files that are new since the last pass are scanned).

The alarm store is ``$IOT_DATA_DIR/alerts/alerts.sqlite``; the history is exported
after each pass as two lake tables, ``alarm_log`` (one row per alarm) and
``alarm_deliveries`` (one row per notification and channel), which
``iot-platform sql`` and the ``alarms`` model read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from iot_platform.core.alarm_schemas import ALARM_DELIVERIES, ALARM_LOG
from iot_platform.core.alarms import US, Evaluation, Notification, evaluate
from iot_platform.core.alert_config import AlertConfig, ConfigError, matches, parse_config
from iot_platform.io.alert_delivery import DeliveryReport, deliver_due
from iot_platform.io.alert_store import STORE_FILE, AlertStore
from iot_platform.io.fsutil import exclusive_lock
from iot_platform.io.commit import last_commit
from iot_platform.io.lake_store import parquet_scan
from iot_platform.io.lake import COMMITS_TABLE, DELTA_LOG, Lake, open_lake, read_metadata, write_parquet_atomic

CONFIG_FILE = "alerts.yaml"
CONFIG_ENV = "IOT_ALERTS_CONFIG"
UNTIL_KEY = "iot.until_us"
# cleared alarms stay in the evaluation for this long, so a late point of their
# episode finds them instead of opening a new alarm
KEEP_CLEARED_US = 2 * 86_400 * US



def config_path(root: Path) -> Path:
    return Path(os.environ.get(CONFIG_ENV) or Path(root) / CONFIG_FILE)


def load_config(root: Path, env: Mapping[str, str] | None = None) -> AlertConfig:
    """The alerts configuration (no file: alarms are kept, nothing is sent)."""
    path = config_path(root)
    if not path.exists():
        return AlertConfig()
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, os.environ if env is None else env, str(path))


@dataclasses.dataclass(frozen=True)
class LakeView:
    data_until_us: int | None
    last_batch_us: int | None
    episodes: pa.Table
    days: list[dt.date]


def read_lake(lake: Lake) -> LakeView:
    days = lake.days("anomalies")[-2:]
    until = None
    if days:
        for f in lake.files("anomalies", days[-1]):
            raw = read_metadata(f).get(UNTIL_KEY)
            if raw is not None:
                until = max(until or 0, int(raw))
    last = last_commit(lake)
    last_batch = last[0] if last is not None else None
    return LakeView(until, last_batch, lake.read("anomalies", days), days)


def update_last_seen(lake: Lake, store: AlertStore, days: list[dt.date]) -> dict[str, int]:
    """Each sensor's newest reading, scanning only readings files not seen before."""
    seen = store.scanned()
    new: dict[str, str] = {}
    changed = []
    for day in days:
        for f in lake.files("readings", day):
            st = f.stat()
            ident = f"{st.st_size}:{st.st_mtime_ns}"
            if seen.get(str(f)) != ident:
                new[str(f)] = ident
                changed.append(f)
    if new:
        con = duckdb.connect()
        rows = con.sql(f"SELECT sensor_id, max(epoch_us(ts)) FROM {parquet_scan(con, changed, union_by_name=False)} GROUP BY 1").fetchall()
        store.record_scan(new, {s: int(t) for s, t in rows})
    return store.last_seen()


def routes(config: AlertConfig):
    def route(note: Notification) -> list[str]:
        return [c.name for c in config.channels if matches(c, note, config.groups)]

    return route


@dataclasses.dataclass(frozen=True)
class PassResult:
    evaluation: Evaluation
    delivery: DeliveryReport
    data_until_us: int | None
    last_batch_us: int | None
    open_alarms: int


def pass_lock(root: Path, *, wait: bool = False):
    """Held during a pass; yields False when another pass holds it. Two passes at once would
    each take the other's in-flight (``sending``) rows for interrupted ones and resend them."""
    return exclusive_lock(Path(root) / STORE_FILE.parent / ".pass.lock", blocking=wait)


def run_pass(root: Path, config: AlertConfig, now_us: int, *, deliver: bool = True) -> PassResult | None:
    """Evaluate, queue (one transaction), deliver what is due, export the history.
    None when another pass is running (it will do the work)."""
    with pass_lock(root) as got:
        return _run_pass(Path(root), config, now_us, deliver) if got else None


def _run_pass(root: Path, config: AlertConfig, now_us: int, deliver: bool) -> PassResult:
    lake = open_lake(root)
    view = read_lake(lake)
    with AlertStore.at(root) as store:
        last_seen = update_last_seen(lake, store, view.days) if view.days else store.last_seen()
        previous = store.alarms(since_us=now_us - KEEP_CLEARED_US)
        ev = evaluate(previous, view.episodes, last_seen, now_us=now_us, data_until_us=view.data_until_us,
                      last_batch_us=view.last_batch_us, policy=config.policy)  # fmt: skip
        store.apply(ev, routes(config))
        report = deliver_due(store, config, now_us) if deliver else DeliveryReport()
        export_history(lake, store)
        n_open = len(store.alarms(status=("active", "acknowledged")))
    return PassResult(ev, report, view.data_until_us, view.last_batch_us, n_open)


def lake_signature(root: Path) -> str:
    """What detection last wrote, from file times only (cheap enough for a sensor tick)."""
    lake = open_lake(root)
    parts = []
    log = lake.lake_dir / COMMITS_TABLE / DELTA_LOG
    if log.is_dir():  # a new micro-batch commit adds a log entry
        parts.append(f"state:{log.stat().st_mtime_ns}")
    for day in lake.days("anomalies")[-1:]:
        parts += [f"{f.name}:{f.stat().st_mtime_ns}" for f in lake.files("anomalies", day)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] if parts else ""


def due_keys(root: Path, now_us: int) -> list[str]:
    """Idempotency keys and attempt counts of the outbox rows due now (read-only; [] with no store)."""
    path = Path(root) / STORE_FILE
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = con.execute(
            "SELECT notification_id, channel, attempts FROM outbox WHERE (status = 'pending' AND next_attempt_us <= ?) "
            "OR status = 'sending'", [now_us]).fetchall()  # fmt: skip
    finally:
        con.close()
    return [f"{n}@{c}#{a}" for n, c, a in rows]


def _ts(values: list) -> pa.Array:
    return pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def export_history(lake: Lake, store: AlertStore) -> None:
    """Write ``alarm_log`` and ``alarm_deliveries`` as lake tables, one partition per day an
    alarm's trouble began; each file is replaced atomically (the history is small)."""
    rows = [dict(r) for r in store.con.execute("SELECT * FROM alarms ORDER BY created_us, alarm_id")]
    out = [dict(r) for r in store.con.execute(
        "SELECT o.notification_id, o.channel, o.alarm_id, o.event, o.created_us, o.status, o.attempts, o.sent_us, o.last_error, "
        "coalesce(a.first_seen_us, o.created_us) AS first_seen_us FROM outbox AS o LEFT JOIN alarms AS a USING (alarm_id) "
        "ORDER BY o.created_us, o.notification_id, o.channel")]  # fmt: skip
    # partitioned by the day the trouble began in data time (not wall time), like the lake's other tables
    for table, data, time_col in (("alarm_log", rows, "first_seen_us"), ("alarm_deliveries", out, "first_seen_us")):
        by_day: dict[str, list[dict]] = {}
        for r in data:
            by_day.setdefault(dt.datetime.fromtimestamp(r[time_col] / 1e6, dt.UTC).date().isoformat(), []).append(r)
        for day, rs in by_day.items():
            write_parquet_atomic(_table(table, rs), lake.table_dir(table) / f"date={day}" / "data.parquet")


def _table(table: str, rs: list[dict]) -> pa.Table:
    col = lambda k: [r[k] for r in rs]  # noqa: E731
    if table == "alarm_log":
        cols = {k: col(k) for k in ("alarm_id", "sensor_id", "alarm_type", "metric", "severity", "status")}
        cols |= {"first_seen": _ts(col("first_seen_us")), "last_seen": _ts(col("last_seen_us"))}
        cols |= {k: col(k) for k in ("value", "score", "message", "anomaly_ids")}
        cols |= {"created_at": _ts(col("created_us")), "updated_at": _ts(col("updated_us")), "acked_at": _ts(col("acked_us")),
                 "acked_by": col("acked_by"), "cleared_at": _ts(col("cleared_us")), "clear_reason": col("clear_reason"),
                 "n_repeats": col("n_repeats")}  # fmt: skip
        return pa.Table.from_pydict(cols, schema=ALARM_LOG)
    cols = {k: col(k) for k in ("notification_id", "channel", "alarm_id", "event")}
    cols |= {"created_at": _ts(col("created_us")), "status": col("status"), "attempts": col("attempts"),
             "sent_at": _ts(col("sent_us")), "last_error": col("last_error")}  # fmt: skip
    return pa.Table.from_pydict(cols, schema=ALARM_DELIVERIES)
