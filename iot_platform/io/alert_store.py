"""The durable alarm state and notification outbox: one SQLite file, ``$IOT_DATA_DIR/alerts/alerts.sqlite``.

SQLite (stdlib) gives what the outbox needs: transactions, so an evaluation's
alarm changes and the notifications it queues are committed together or not at
all; and ``synchronous=FULL`` in WAL mode, so a committed row survives a crash
or a power cut. Every write is one short ``BEGIN IMMEDIATE`` transaction; the
dashboard and the CLI read it concurrently.

Tables:

* ``alarms``: one row per alarm, its current state (``core.alarms.Alarm``);
* ``outbox``: one row per (notification, channel): ``pending`` -> ``sending``
  (an attempt is under way) -> ``sent``, or back to ``pending`` with a later
  ``next_attempt_us`` after a failure; ``uncertain`` when a channel set to
  ``on_uncertain: skip`` had an attempt interrupted (see ``io.alert_delivery``);
* ``deliveries``: one row per attempt and its outcome, the delivery history;
* ``last_seen`` / ``scanned_files``: each sensor's newest reading, kept up to date
  by scanning only the readings files that are new since the last evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from iot_platform.core.alarms import Alarm, Evaluation, Notification

STORE_FILE = Path("alerts") / "alerts.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id TEXT PRIMARY KEY, sensor_id TEXT NOT NULL, alarm_type TEXT NOT NULL, metric TEXT,
    severity TEXT NOT NULL, status TEXT NOT NULL, first_seen_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL,
    value REAL, score REAL, message TEXT NOT NULL, anomaly_ids TEXT NOT NULL, created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL, acked_us INTEGER, acked_by TEXT, cleared_us INTEGER, clear_reason TEXT,
    last_notified_us INTEGER, notified_severity TEXT, n_repeats INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alarms_status ON alarms (status);
CREATE TABLE IF NOT EXISTS outbox (
    notification_id TEXT NOT NULL, channel TEXT NOT NULL, alarm_id TEXT NOT NULL, event TEXT NOT NULL,
    created_us INTEGER NOT NULL, alarm_json TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL, last_error TEXT, sent_us INTEGER,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_us);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, notification_id TEXT NOT NULL, channel TEXT NOT NULL,
    attempt INTEGER NOT NULL, started_us INTEGER NOT NULL, finished_us INTEGER, outcome TEXT NOT NULL, detail TEXT
);
CREATE TABLE IF NOT EXISTS last_seen (sensor_id TEXT PRIMARY KEY, last_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scanned_files (path TEXT PRIMARY KEY, ident TEXT NOT NULL);
"""

_ALARM_FIELDS = [f.name for f in dataclasses.fields(Alarm)]


def alarm_to_row(a: Alarm) -> dict:
    row = dataclasses.asdict(a)
    row["anomaly_ids"] = json.dumps(list(a.anomaly_ids))
    return row


def alarm_from_row(row: sqlite3.Row | dict) -> Alarm:
    d = {k: row[k] for k in _ALARM_FIELDS}
    d["anomaly_ids"] = tuple(json.loads(d["anomaly_ids"]))
    return Alarm(**d)


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    notification_id: str
    channel: str
    status: str
    attempts: int
    next_attempt_us: int
    created_us: int
    last_error: str | None
    sent_us: int | None
    note: Notification

    @property
    def idempotency_key(self) -> str:
        return f"{self.notification_id}@{self.channel}"


class AlertStore:
    """The alert store at ``path``; ``AlertStore.at(data_root)`` for the usual place."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self.con.row_factory = sqlite3.Row
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.executescript(_SCHEMA)

    @classmethod
    def at(cls, root: str | Path) -> AlertStore:
        return cls(Path(root) / STORE_FILE)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- alarms ------------------------------------------------------------------------------
    def alarms(self, *, status: Iterable[str] | None = None, since_us: int | None = None) -> list[Alarm]:
        """Alarms, newest first; ``status`` filters; ``since_us`` keeps open ones plus those updated since."""
        sql, params = "SELECT * FROM alarms WHERE 1=1", []
        if status is not None:
            st = list(status)
            sql += f" AND status IN ({', '.join('?' * len(st))})"
            params += st
        if since_us is not None:
            sql += " AND (status <> 'cleared' OR updated_us >= ?)"
            params.append(since_us)
        sql += " ORDER BY created_us DESC, alarm_id"
        return [alarm_from_row(r) for r in self.con.execute(sql, params)]

    def alarm(self, alarm_id: str) -> Alarm | None:
        row = self.con.execute("SELECT * FROM alarms WHERE alarm_id = ?", [alarm_id]).fetchone()
        return alarm_from_row(row) if row else None

    def _put_alarm(self, con: sqlite3.Connection, a: Alarm) -> None:
        row = alarm_to_row(a)
        cols = ", ".join(row)
        con.execute(f"INSERT OR REPLACE INTO alarms ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def _queue(self, con: sqlite3.Connection, note: Notification, channels: Iterable[str]) -> None:
        snapshot = json.dumps(alarm_to_row(note.alarm), sort_keys=True)
        for ch in channels:
            # the same notification id queued again (a re-run evaluation) is stored once
            con.execute(
                "INSERT OR IGNORE INTO outbox (notification_id, channel, alarm_id, event, created_us, alarm_json, status, "
                "next_attempt_us) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [note.notification_id, ch, note.alarm_id, note.event, note.created_us, snapshot, note.created_us],
            )

    def apply(self, ev: Evaluation, route) -> None:
        """Commit an evaluation: its alarms and, for each notification, one outbox row per
        channel ``route(note)`` names. All or nothing."""
        with self.transaction() as con:
            for a in ev.alarms.values():
                self._put_alarm(con, a)
            for note in ev.notifications:
                self._queue(con, note, route(note))

    def put_alarm(self, a: Alarm, note: Notification | None = None, channels: Iterable[str] = ()) -> None:
        with self.transaction() as con:
            self._put_alarm(con, a)
            if note is not None:
                self._queue(con, note, channels)

    def queue(self, note: Notification, channels: Iterable[str]) -> None:
        with self.transaction() as con:
            self._queue(con, note, channels)

    # -- outbox ---------------------------------------------------------------------------------
    def _outbox_row(self, r: sqlite3.Row) -> OutboxRow:
        alarm = alarm_from_row(json.loads(r["alarm_json"]))
        note = Notification(r["notification_id"], r["alarm_id"], r["event"], r["created_us"], alarm)
        return OutboxRow(r["notification_id"], r["channel"], r["status"], r["attempts"], r["next_attempt_us"],
                         r["created_us"], r["last_error"], r["sent_us"], note)  # fmt: skip

    def due(self, now_us: int) -> list[OutboxRow]:
        """Rows to attempt now: pending and due, or left ``sending`` by an interrupted attempt."""
        rows = self.con.execute(
            "SELECT * FROM outbox WHERE (status = 'pending' AND next_attempt_us <= ?) OR status = 'sending' "
            "ORDER BY created_us, notification_id, channel",
            [now_us],
        )
        return [self._outbox_row(r) for r in rows]

    def outbox(self, *, status: str | None = None) -> list[OutboxRow]:
        sql = "SELECT * FROM outbox" + (" WHERE status = ?" if status else "") + " ORDER BY created_us, notification_id, channel"
        return [self._outbox_row(r) for r in self.con.execute(sql, [status] if status else [])]

    def next_due_us(self) -> int | None:
        row = self.con.execute("SELECT min(next_attempt_us) FROM outbox WHERE status IN ('pending', 'sending')").fetchone()
        return row[0]

    def begin_attempt(self, row: OutboxRow, now_us: int) -> int:
        """Record that an attempt starts (committed before anything is sent). Returns its number."""
        with self.transaction() as con:
            attempt = con.execute(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1 WHERE notification_id = ? AND channel = ? "
                "RETURNING attempts",
                [row.notification_id, row.channel],
            ).fetchone()[0]
            con.execute(
                "INSERT INTO deliveries (notification_id, channel, attempt, started_us, outcome) VALUES (?, ?, ?, ?, 'started')",
                [row.notification_id, row.channel, attempt, now_us],
            )
        return attempt

    def _finish(self, row: OutboxRow, attempt: int, now_us: int, outcome: str, detail: str | None, sql: str, params: list) -> None:
        with self.transaction() as con:
            con.execute(sql + " WHERE notification_id = ? AND channel = ?", [*params, row.notification_id, row.channel])
            con.execute(
                "UPDATE deliveries SET finished_us = ?, outcome = ?, detail = ? WHERE notification_id = ? AND channel = ? AND attempt = ?",
                [now_us, outcome, detail, row.notification_id, row.channel, attempt],
            )

    def sent(self, row: OutboxRow, attempt: int, now_us: int) -> None:
        self._finish(row, attempt, now_us, "sent", None, "UPDATE outbox SET status = 'sent', sent_us = ?, last_error = NULL", [now_us])

    def failed(self, row: OutboxRow, attempt: int, now_us: int, error: str, next_attempt_us: int) -> None:
        self._finish(row, attempt, now_us, "error", error,
                     "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_us = ?", [error, next_attempt_us])  # fmt: skip

    def interrupted(self, row: OutboxRow, now_us: int, *, resend: bool) -> None:
        """An attempt was under way when its process died: whether it reached the channel is unknown."""
        with self.transaction() as con:
            con.execute(
                "UPDATE deliveries SET finished_us = ?, outcome = 'interrupted' WHERE notification_id = ? AND channel = ? "
                "AND attempt = ? AND outcome = 'started'",
                [now_us, row.notification_id, row.channel, row.attempts],
            )
            status = "pending" if resend else "uncertain"
            detail = "an attempt was interrupted; " + ("resending with the same idempotency key" if resend else "not resent (on_uncertain: skip)")
            con.execute(
                "UPDATE outbox SET status = ?, last_error = ? WHERE notification_id = ? AND channel = ?",
                [status, detail, row.notification_id, row.channel],
            )

    def deliveries(self) -> list[sqlite3.Row]:
        return list(self.con.execute("SELECT * FROM deliveries ORDER BY id"))

    # -- last seen ------------------------------------------------------------------------------
    def scanned(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.con.execute("SELECT path, ident FROM scanned_files")}

    def record_scan(self, idents: dict[str, str], last: dict[str, int]) -> None:
        with self.transaction() as con:
            con.executemany("INSERT OR REPLACE INTO scanned_files VALUES (?, ?)", list(idents.items()))
            con.executemany(
                "INSERT INTO last_seen VALUES (?, ?) ON CONFLICT (sensor_id) DO UPDATE SET last_us = max(last_us, excluded.last_us)",
                list(last.items()),
            )

    def last_seen(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.con.execute("SELECT sensor_id, last_us FROM last_seen")}
