"""Alarm lifecycle: anomaly episodes and silence in, alarm state and notifications out.

A pure state machine (no clock, no files, no Dagster): the caller passes the
previous alarms, the anomaly episodes of the lake, when each sensor last
reported and two times, and gets back the alarms that changed and the
notifications to send.

* **One alarm per (sensor, type, metric) episode.** An episode opens an alarm
  whose id is the episode's stable ``anomaly_id``. The same episode growing
  across micro-batches updates the alarm (``last_seen``, peak score, worst
  severity) and sends nothing. An episode that continues an open alarm of the
  same key within ``clear_after_s`` (an episode split at midnight, or two
  episodes the detectors kept apart by a short gap) joins it.
* **Lifecycle** ``active -> acknowledged -> cleared`` (``active -> cleared``
  too). An alarm clears by itself when its episode has not been extended for
  ``clear_after_s`` of *data* time (``data_until_us``, how far detection has
  run), so a stalled pipeline never clears alarms it simply has not seen the
  end of; or by hand. A cleared alarm is never reopened by its own episode.
* **Notifications** on opening, on escalation warning -> critical (which also
  re-activates an acknowledged alarm: the acknowledgement was for a warning),
  on clearing, and every ``repeat_interval_s`` while an alarm stays active
  (wall-clock time ``now_us``). Their ids are deterministic
  (``<alarm_id>:opened``, ``:escalated``, ``:repeat:<n>``, ``:cleared``), so an
  evaluation re-run after a crash queues the same ids, which the outbox
  stores once.
* **Deadman.** A sensor that reported before and has had no reading for
  ``sensor_silence_s`` of data time gets a ``no_data`` alarm (cleared when a
  reading arrives); the pipeline gets a ``pipeline_stalled`` alarm when no
  micro-batch has committed for ``pipeline_silence_s`` of wall-clock time.

Times are integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import ANOMALY_TYPES, SEVERITIES
from iot_platform.core.calendar import to_us

US = 1_000_000
SEVERITY_RANK = {"warning": 1, "critical": 2}
STATUSES: tuple[str, ...] = ("active", "acknowledged", "cleared")
OPEN_STATUSES: tuple[str, ...] = ("active", "acknowledged")
NO_DATA = "no_data"
PIPELINE_STALLED = "pipeline_stalled"
PIPELINE_ID = "__pipeline__"
ALARM_TYPES: tuple[str, ...] = (*ANOMALY_TYPES, NO_DATA, PIPELINE_STALLED)
EVENTS: tuple[str, ...] = ("opened", "escalated", "repeat", "cleared", "test")


@dataclasses.dataclass(frozen=True)
class AlarmPolicy:
    """Which episodes open alarms and when alarms clear, repeat and go dead.

    ``types=None`` means every anomaly type; a ``*_s`` of 0 turns that feature off
    (``clear_after_s`` excepted: an episode must be allowed to end).
    """

    types: tuple[str, ...] | None = None
    min_severity: str = "warning"
    clear_after_s: int = 300
    repeat_interval_s: int = 0
    sensor_silence_s: int = 600
    pipeline_silence_s: int = 300
    notify_on_clear: bool = True

    def __post_init__(self) -> None:
        if self.types is not None:
            bad = [t for t in self.types if t not in ANOMALY_TYPES]
            if bad:
                raise ValueError(f"alarm type {bad[0]!r} is not known; expected some of {', '.join(ANOMALY_TYPES)}")
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity={self.min_severity!r} is invalid; expected one of {', '.join(SEVERITIES)}")
        if not isinstance(self.clear_after_s, int) or self.clear_after_s <= 0:
            raise ValueError(f"clear_after_s={self.clear_after_s!r} is invalid; expected an integer > 0")
        for name in ("repeat_interval_s", "sensor_silence_s", "pipeline_silence_s"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}={v!r} is invalid; expected an integer >= 0 (0 turns it off)")


@dataclasses.dataclass(frozen=True)
class Alarm:
    alarm_id: str
    sensor_id: str
    alarm_type: str
    metric: str | None
    severity: str
    status: str
    first_seen_us: int  # the episode's start (for no_data: the last reading)
    last_seen_us: int  # the episode's latest point
    value: float | None
    score: float | None
    message: str
    anomaly_ids: tuple[str, ...]
    created_us: int
    updated_us: int
    acked_us: int | None = None
    acked_by: str | None = None
    cleared_us: int | None = None
    clear_reason: str | None = None
    last_notified_us: int | None = None
    notified_severity: str | None = None
    n_repeats: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.sensor_id, self.alarm_type, self.metric)


@dataclasses.dataclass(frozen=True)
class Notification:
    notification_id: str
    alarm_id: str
    event: str
    created_us: int
    alarm: Alarm  # the alarm as it was when the notification was queued


@dataclasses.dataclass(frozen=True)
class Evaluation:
    alarms: dict[str, Alarm]  # every alarm that is new or changed, by id
    notifications: list[Notification]


def _rank(severity: str) -> int:
    return SEVERITY_RANK.get(severity, 0)


def relevant_episodes(episodes: pa.Table, policy: AlarmPolicy, data_until_us: int, known_ids: Iterable[str] = ()) -> pa.Table:
    """Episodes that may open or update an alarm: of the chosen types and severities, and
    either still live (extended within ``clear_after_s``) or already behind an alarm.

    Vectorized, so the Python loop of :func:`evaluate` only sees the few that matter.
    """
    if episodes.num_rows == 0:
        return episodes
    keep = pc.greater_equal(pc.cast(episodes["end_ts"], pa.int64()), data_until_us - policy.clear_after_s * US)
    known = list(known_ids)
    if known:
        keep = pc.or_(keep, pc.is_in(episodes["anomaly_id"], pa.array(known, pa.string())))
    if policy.types is not None:
        keep = pc.and_(keep, pc.is_in(episodes["anomaly_type"], pa.array(list(policy.types), pa.string())))
    if policy.min_severity == "critical":
        keep = pc.and_(keep, pc.equal(episodes["severity"], "critical"))
    return episodes.filter(keep)


def evaluate(
    previous: Sequence[Alarm],
    episodes: pa.Table,
    last_reading_us: Mapping[str, int],
    *,
    now_us: int,
    data_until_us: int | None,
    last_batch_us: int | None,
    policy: AlarmPolicy = AlarmPolicy(),
) -> Evaluation:
    """The alarms that change and the notifications to queue (see the module docstring).

    ``episodes``: rows of the ``anomalies`` table (any order). ``last_reading_us``: per
    sensor, its newest reading the pipeline has seen. ``data_until_us``: how far
    detection has run (None: nothing yet; then episodes neither open nor clear).
    ``last_batch_us``: when the last micro-batch committed (None: never).
    """
    cur: dict[str, Alarm] = {a.alarm_id: a for a in previous}
    changed: dict[str, Alarm] = {}
    notes: list[Notification] = []

    def put(a: Alarm) -> None:
        cur[a.alarm_id] = a
        changed[a.alarm_id] = a

    def notify(a: Alarm, event: str, suffix: str = "") -> Alarm:
        a = dataclasses.replace(a, last_notified_us=now_us, notified_severity=a.severity)
        notes.append(Notification(f"{a.alarm_id}:{event}{suffix}", a.alarm_id, event, now_us, a))
        return a

    by_anomaly = {aid: a.alarm_id for a in previous for aid in a.anomaly_ids}
    open_by_key = {a.key: a.alarm_id for a in previous if a.is_open}

    if data_until_us is not None:
        rows = relevant_episodes(episodes, policy, data_until_us, by_anomaly).sort_by(
            [("start_ts", "ascending"), ("anomaly_id", "ascending")]
        )
        # a few rows at most per live episode: the filter above did the bulk work
        for ep in rows.to_pylist():
            _apply_episode(ep, cur, by_anomaly, open_by_key, policy, now_us, put, notify)
        for a in list(cur.values()):
            if a.alarm_type in ANOMALY_TYPES and a.is_open and data_until_us - a.last_seen_us > policy.clear_after_s * US:
                put(_clear(a, now_us, "episode ended", notify if policy.notify_on_clear and a.last_notified_us else None))
        if policy.sensor_silence_s:
            _deadman_sensors(cur, open_by_key, last_reading_us, data_until_us, policy, now_us, put, notify)
    if policy.pipeline_silence_s and last_batch_us is not None:
        _deadman_pipeline(cur, open_by_key, last_batch_us, policy, now_us, put, notify)
    if policy.repeat_interval_s:
        for a in list(cur.values()):
            due = a.last_notified_us is not None and now_us - a.last_notified_us >= policy.repeat_interval_s * US
            if a.status == "active" and due:
                a = dataclasses.replace(a, n_repeats=a.n_repeats + 1, updated_us=now_us)
                put(notify(a, "repeat", f":{a.n_repeats}"))
    return Evaluation(changed, notes)


def _apply_episode(ep: dict, cur, by_anomaly, open_by_key, policy: AlarmPolicy, now_us: int, put, notify) -> None:
    aid = ep["anomaly_id"]
    start = _us(ep["start_ts"])
    end = _us(ep["end_ts"])
    key = (ep["sensor_id"], ep["anomaly_type"], ep["metric"])
    alarm_id = by_anomaly.get(aid)
    if alarm_id is None:
        open_id = open_by_key.get(key)
        if open_id is not None and start <= cur[open_id].last_seen_us + policy.clear_after_s * US:
            alarm_id = open_id  # the same trouble, continued: join it
            by_anomaly[aid] = alarm_id
    if alarm_id is None:
        a = Alarm(
            alarm_id=aid, sensor_id=ep["sensor_id"], alarm_type=ep["anomaly_type"], metric=ep["metric"],
            severity=ep["severity"], status="active", first_seen_us=start, last_seen_us=end,
            value=ep["value"], score=ep["score"], message=ep["message"] or "", anomaly_ids=(aid,),
            created_us=now_us, updated_us=now_us,
        )  # fmt: skip
        by_anomaly[aid] = aid
        open_by_key[key] = aid
        put(notify(a, "opened"))
        return
    a = cur[alarm_id]
    new = a
    if aid not in a.anomaly_ids:
        new = dataclasses.replace(new, anomaly_ids=(*a.anomaly_ids, aid))
    if end > a.last_seen_us:
        new = dataclasses.replace(new, last_seen_us=end)
    score = ep["score"]
    if score is not None and (a.score is None or score > a.score):
        new = dataclasses.replace(new, score=score, value=ep["value"], message=ep["message"] or "")
    escalated = _rank(ep["severity"]) > _rank(a.severity)
    if escalated:
        new = dataclasses.replace(new, severity=ep["severity"])
    if new == a:
        return
    new = dataclasses.replace(new, updated_us=now_us)
    if escalated and a.is_open:
        new = dataclasses.replace(new, status="active")
        if _rank(new.severity) > _rank(a.notified_severity or ""):
            new = notify(new, "escalated")
    put(new)


def _clear(a: Alarm, now_us: int, reason: str, notify) -> Alarm:
    a = dataclasses.replace(a, status="cleared", cleared_us=now_us, clear_reason=reason, updated_us=now_us)
    return notify(a, "cleared") if notify is not None else a


def _deadman_alarm(alarm_id: str, sensor_id: str, alarm_type: str, since_us: int, until_us: int, message: str,
                   now_us: int) -> Alarm:  # fmt: skip
    """A critical silence alarm (a quiet sensor, a stalled pipeline): quiet from ``since_us`` to ``until_us``."""
    return Alarm(
        alarm_id=alarm_id, sensor_id=sensor_id, alarm_type=alarm_type, metric=None,
        severity="critical", status="active", first_seen_us=since_us, last_seen_us=until_us,
        value=float((until_us - since_us) // US), score=None, message=message,
        anomaly_ids=(), created_us=now_us, updated_us=now_us,
    )  # fmt: skip


def _deadman_sensors(cur, open_by_key, last_reading_us: Mapping[str, int], data_until_us: int, policy: AlarmPolicy,
                     now_us: int, put, notify) -> None:  # fmt: skip
    for sensor, last in sorted(last_reading_us.items()):
        key = (sensor, NO_DATA, None)
        open_id = open_by_key.get(key)
        silent = data_until_us - last >= policy.sensor_silence_s * US
        # the same silence (same last reading) cleared by hand stays cleared
        if silent and open_id is None and f"nodata-{sensor}-{last}" not in cur:
            silent_s = (data_until_us - last) // US
            a = _deadman_alarm(f"nodata-{sensor}-{last}", sensor, NO_DATA, last, data_until_us,
                               f"no reading from {sensor} for {silent_s} s", now_us)  # fmt: skip
            open_by_key[key] = a.alarm_id
            put(notify(a, "opened"))
        elif not silent and open_id is not None and last > cur[open_id].first_seen_us:
            put(_clear(cur[open_id], now_us, "data resumed", notify if policy.notify_on_clear else None))
            del open_by_key[key]


def _deadman_pipeline(cur, open_by_key, last_batch_us: int, policy: AlarmPolicy, now_us: int, put, notify) -> None:
    key = (PIPELINE_ID, PIPELINE_STALLED, None)
    open_id = open_by_key.get(key)
    stalled = now_us - last_batch_us >= policy.pipeline_silence_s * US
    if stalled and open_id is None and f"pipeline-{last_batch_us}" not in cur:
        quiet_s = (now_us - last_batch_us) // US
        a = _deadman_alarm(f"pipeline-{last_batch_us}", PIPELINE_ID, PIPELINE_STALLED, last_batch_us, now_us,
                           f"no micro-batch committed for {quiet_s} s", now_us)  # fmt: skip
        open_by_key[key] = a.alarm_id
        put(notify(a, "opened"))
    elif open_id is not None and last_batch_us > cur[open_id].first_seen_us:
        put(_clear(cur[open_id], now_us, "micro-batches resumed", notify if policy.notify_on_clear else None))
        del open_by_key[key]


def acknowledge(alarm: Alarm, now_us: int, by: str = "") -> Alarm:
    """Someone is on it: no repeats until it escalates. Only an active alarm can be acknowledged."""
    if alarm.status != "active":
        raise ValueError(f"alarm {alarm.alarm_id} is {alarm.status}; only an active alarm can be acknowledged")
    return dataclasses.replace(alarm, status="acknowledged", acked_us=now_us, acked_by=by or None, updated_us=now_us)


def clear_by_hand(alarm: Alarm, now_us: int, by: str = "", notify: bool = True) -> tuple[Alarm, Notification | None]:
    """Clear an open alarm by hand; its episode, if it goes on, does not reopen it."""
    if not alarm.is_open:
        raise ValueError(f"alarm {alarm.alarm_id} is already cleared")
    notes: list[Notification] = []

    def _note(a: Alarm, event: str) -> Alarm:
        a = dataclasses.replace(a, last_notified_us=now_us, notified_severity=a.severity)
        notes.append(Notification(f"{a.alarm_id}:{event}", a.alarm_id, event, now_us, a))
        return a

    a = _clear(alarm, now_us, f"cleared by hand{f' by {by}' if by else ''}", _note if notify and alarm.last_notified_us else None)
    return a, (notes[0] if notes else None)


def _us(value) -> int:
    """A timestamp from an Arrow row (a datetime) or an int, in microseconds."""
    if isinstance(value, int):
        return value
    return to_us(value)
