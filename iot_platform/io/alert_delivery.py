"""Deliver the outbox: webhook (urllib) and e-mail (smtplib), with retries and backoff.

An attempt is recorded before anything is sent and its outcome after:

1. ``begin_attempt`` commits ``status = 'sending'`` (and a ``deliveries`` row);
2. the message goes out, carrying its idempotency key ``<notification_id>@<channel>``
   (header ``Idempotency-Key`` for a webhook; ``Message-ID`` and ``X-Idempotency-Key``
   for an e-mail);
3. ``sent`` (or ``failed`` with the next attempt time) commits the outcome.

A crash between 1 and 3 leaves the row ``sending``: whether the channel got the
message is unknown (the window is from the request leaving to the outcome's
commit, normally milliseconds). The next pass resolves it per channel:

* ``on_uncertain: resend`` (default): **at least once**. It is sent again with the
  *same* idempotency key, so a receiver that remembers keys (or a mail system
  that deduplicates by Message-ID) sees it exactly once; one that does not may
  see it twice, only after a crash inside that window.
* ``on_uncertain: skip``: **at most once**. The row becomes ``uncertain``, is never
  resent, and shows in ``iot-platform alerts list --outbox``.

Outside that window every notification goes out exactly once: a failed attempt
(an error status, a refused connection, a timeout) did not deliver and is retried
after ``retry.delay_s(attempts)`` (5 s, 10 s, 20 s, ... up to 10 min). A channel
that fails is skipped for the rest of the pass, so it delays only its own
notifications.
"""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable

from iot_platform.core.alarms import US
from iot_platform.core.alert_config import AlertConfig, Channel, email_message, payload_bytes, redact
from iot_platform.core.alarms import Notification
from iot_platform.io.alert_store import AlertStore

USER_AGENT = "iot-platform-alerts/1"


class DeliveryError(Exception):
    """The channel did not take the message (the text is safe to show: no secrets)."""


def send_webhook(channel: Channel, note: Notification, key: str) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Idempotency-Key": key,
               "X-IOT-Notification-Id": note.notification_id, **dict(channel.headers)}  # fmt: skip
    req = urllib.request.Request(channel.url, data=payload_bytes(note, channel.format), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=channel.timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach the webhook: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}") from None


def send_email(channel: Channel, note: Notification, key: str) -> None:
    msg = email_message(note, channel, key)
    try:
        if channel.ssl:
            smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_s, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s)
        with smtp:
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if channel.username:
                smtp.login(channel.username, channel.password)
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {channel.host}:{channel.port}: {type(exc).__name__}: {exc}") from None


SENDERS: dict[str, Callable[[Channel, Notification, str], None]] = {"webhook": send_webhook, "email": send_email}


def send(channel: Channel, note: Notification, key: str) -> None:
    if channel.unusable:
        raise DeliveryError(channel.unusable)
    SENDERS[channel.type](channel, note, key)


@dataclasses.dataclass
class DeliveryReport:
    sent: list[str] = dataclasses.field(default_factory=list)  # idempotency keys
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # channel -> first error this pass
    uncertain: list[str] = dataclasses.field(default_factory=list)
    deferred: int = 0  # rows not tried because their channel failed earlier in this pass


def deliver_due(store: AlertStore, config: AlertConfig, now_us: int, clock: Callable[[], int] | None = None) -> DeliveryReport:
    """Attempt every due outbox row once (see the module docstring for the guarantees)."""
    clock = clock or (lambda: now_us)
    report = DeliveryReport()
    channels = {c.name: c for c in config.channels}
    for row in store.due(now_us):
        ch = channels.get(row.channel)
        if ch is None:
            report.failed.setdefault(row.channel, f"channel {row.channel!r} is no longer configured")
            continue
        if row.channel in report.failed:
            report.deferred += 1
            continue
        if row.status == "sending":
            resend = ch.on_uncertain == "resend"
            store.interrupted(row, clock(), resend=resend)
            if not resend:
                report.uncertain.append(row.idempotency_key)
                continue
        attempt = store.begin_attempt(row, clock())
        try:
            send(ch, row.note, row.idempotency_key)
        except Exception as exc:  # any failure of one channel must not stop the others
            error = redact(str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}", config.secrets)
            t = clock()
            store.failed(row, attempt, t, error, t + int(config.retry.delay_s(attempt) * US))
            report.failed[row.channel] = error
            continue
        store.sent(row, attempt, clock())
        report.sent.append(row.idempotency_key)
    return report
