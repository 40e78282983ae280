"""``iot-platform alerts``: list alarms, acknowledge or clear one, send a test to a channel.

Reads and writes the alert store (``$IOT_DATA_DIR/alerts/alerts.sqlite``); an
acknowledgement or a manual clear waits for a running alerting pass to finish,
so neither overwrites the other. A notification of a manual clear is queued and
goes out with the next pass (within ~20 s when ``iot-platform ui`` runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from iot_platform.settings import data_dir
from iot_platform.core.calendar import US



def _now_us() -> int:
    return time.time_ns() // 1000


def _ts(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / US, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _root(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).resolve() if args.data_dir else data_dir()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from iot_platform.io.alert_store import AlertStore, alarm_to_row

    with AlertStore.at(_root(args)) as store:
        if args.outbox:
            rows = store.outbox(status=args.status)
            if args.format == "json":
                print(json.dumps([{"notification_id": r.notification_id, "channel": r.channel, "status": r.status,
                                   "attempts": r.attempts, "next_attempt_us": r.next_attempt_us, "sent_us": r.sent_us,
                                   "last_error": r.last_error} for r in rows], indent=1))  # fmt: skip
                return 0
            print(_table([[r.notification_id, r.channel, r.status, r.attempts, _ts(r.sent_us), r.last_error or ""] for r in rows],
                         ["NOTIFICATION", "CHANNEL", "STATUS", "ATTEMPTS", "SENT", "LAST ERROR"]))  # fmt: skip
            return 0
        status = [args.status] if args.status else (None if args.all else ["active", "acknowledged"])
        alarms = store.alarms(status=status)
    if args.format == "json":
        print(json.dumps([alarm_to_row(a) for a in alarms], indent=1))
        return 0
    if not alarms:
        print("no alarms" if args.all or args.status else "no open alarms (--all shows cleared ones too)")
        return 0
    rows = [[a.alarm_id, a.status, a.severity, a.sensor_id, a.alarm_type, a.metric or "-", _ts(a.first_seen_us),
             _ts(a.last_seen_us), a.message] for a in alarms]  # fmt: skip
    print(_table(rows, ["ID", "STATUS", "SEVERITY", "SENSOR", "TYPE", "METRIC", "FIRST SEEN", "LAST SEEN", "MESSAGE"]))
    return 0


def _change(args: argparse.Namespace, action: str) -> int:
    from iot_platform.cli import CliError
    from iot_platform.core.alarms import acknowledge, clear_by_hand
    from iot_platform.io.alert_store import AlertStore
    from iot_platform.io.alerts import load_config, pass_lock, routes

    root = _root(args)
    config = load_config(root) if action == "clear" else None
    with pass_lock(root, wait=True), AlertStore.at(root) as store:
        alarm = store.alarm(args.alarm_id)
        if alarm is None:
            raise CliError(f"no alarm with id {args.alarm_id!r}; `iot-platform alerts list --all` shows them")
        now = _now_us()
        try:
            if action == "ack":
                store.put_alarm(acknowledge(alarm, now, by=args.by))
                print(f"acknowledged {alarm.alarm_id} ({alarm.alarm_type} on {alarm.sensor_id})")
                return 0
            cleared, note = clear_by_hand(alarm, now, by=args.by)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        channels = routes(config)(note) if note is not None else []
        store.put_alarm(cleared, note, channels)
        queued = f"; notification queued for {', '.join(channels)}" if channels else ""
        print(f"cleared {alarm.alarm_id} ({alarm.alarm_type} on {alarm.sensor_id}){queued}")
    return 0


def cmd_test_channel(args: argparse.Namespace) -> int:
    from iot_platform.core.alarms import Alarm, Notification
    from iot_platform.core.alert_config import redact
    from iot_platform.io.alert_delivery import DeliveryError, send
    from iot_platform.io.alerts import load_config

    config = load_config(_root(args))
    channel = config.channel(args.name)
    now = _now_us()
    alarm = Alarm(
        alarm_id=f"test-{now}", sensor_id="test", alarm_type="test", metric=None, severity="warning", status="active",
        first_seen_us=now, last_seen_us=now, value=None, score=None,
        message=f"a test notification from iot-platform to channel {channel.name}", anomaly_ids=(), created_us=now, updated_us=now,
    )  # fmt: skip
    note = Notification(f"test-{now}:test", alarm.alarm_id, "test", now, alarm)
    try:
        send(channel, note, f"{note.notification_id}@{channel.name}")
    except DeliveryError as exc:
        print(f"Error: channel {channel.name} ({channel.type}) failed: {redact(str(exc), config.secrets)}", file=sys.stderr)
        return 1
    print(f"sent a test notification to {channel.name} ({channel.type})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("alerts", help="list, acknowledge and clear alarms; test a notification channel")
    p.add_argument("--data-dir", help="the data root (default $IOT_DATA_DIR or ./data)")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    lp = asub.add_parser("list", help="open alarms (--all: with cleared ones; --outbox: notifications and their delivery)")
    lp.add_argument("--all", action="store_true")
    lp.add_argument("--status", help="only this status (active, acknowledged, cleared; for --outbox: pending, sent, ...)")
    lp.add_argument("--outbox", action="store_true")
    lp.add_argument("--format", choices=("table", "json"), default="table")
    lp.set_defaults(func=cmd_list)
    for name, action, text in (("ack", "ack", "acknowledge an active alarm (no repeats until it escalates)"),
                               ("clear", "clear", "clear an alarm by hand (its episode will not reopen it)")):  # fmt: skip
        ap = asub.add_parser(name, help=text)
        ap.add_argument("alarm_id", metavar="ID")
        ap.add_argument("--by", default="", help="who (recorded with the alarm)")
        ap.set_defaults(func=lambda a, _action=action: _change(a, _action))
    tp = asub.add_parser("test-channel", help="send a test notification to a configured channel now")
    tp.add_argument("name", metavar="NAME")
    tp.set_defaults(func=cmd_test_channel)
