"""Alerting configuration and messages: channels, filters, groups, payloads, backoff.

Pure: the caller reads the YAML file and passes the parsed mapping plus the
environment (``env``) that ``${VAR}`` references resolve against. A resolved
secret is remembered in :attr:`AlertConfig.secrets` so that error messages can
be scrubbed of it (:func:`redact`); the channel objects' ``repr`` hides it.

The file (``$IOT_DATA_DIR/alerts.yaml``)::

    policy: {min_severity: warning, clear_after_s: 300, repeat_interval_s: 3600,
             sensor_silence_s: 600, pipeline_silence_s: 300, types: [spike, flatline]}
    retry: {base_s: 5, max_s: 600}
    groups: {lab: ["sensor_00*"], roof: ["roof_*"]}
    channels:
      ops:
        type: webhook
        url: ${OPS_WEBHOOK_URL}
        format: slack            # or json (default)
        headers: {Authorization: "Bearer ${OPS_TOKEN}"}
        filters: {severities: [critical], groups: [lab], types: [spike, no_data]}
      oncall:
        type: email
        host: smtp.example.org
        port: 587
        starttls: true
        username: ${SMTP_USER}
        password: ${SMTP_PASSWORD}
        from: iot-alerts@example.org
        to: [oncall@example.org]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
import re
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from iot_platform.core.alarms import ALARM_TYPES, AlarmPolicy, Notification
from iot_platform.core.schemas import SEVERITIES

CHANNEL_TYPES = ("webhook", "email")
WEBHOOK_FORMATS = ("json", "slack")
ON_UNCERTAIN = ("resend", "skip")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(ValueError):
    """A bad alerts configuration: the message names the file, field and value."""


class UnsetVariable(ConfigError):
    """A channel's ``${VAR}`` is not in the environment: that channel cannot send (the others can)."""


@dataclasses.dataclass(frozen=True)
class Filters:
    groups: tuple[str, ...] = ()  # empty: any
    severities: tuple[str, ...] = ()
    types: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Channel:
    name: str
    type: str
    filters: Filters = Filters()
    on_uncertain: str = "resend"
    timeout_s: float = 10.0
    # webhook
    url: str = dataclasses.field(default="", repr=False)
    format: str = "json"
    headers: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    # email
    host: str = ""
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str = dataclasses.field(default="", repr=False)
    password: str = dataclasses.field(default="", repr=False)
    sender: str = ""
    to: tuple[str, ...] = ()
    # why the channel cannot send (an unset ${VAR}): its notifications wait and fail with this; "" if it can
    unusable: str = ""


@dataclasses.dataclass(frozen=True)
class Retry:
    base_s: float = 5.0
    max_s: float = 600.0

    def delay_s(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt: base, 2 base, 4 base, ... capped."""
        return min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))


@dataclasses.dataclass(frozen=True)
class AlertConfig:
    policy: AlarmPolicy = AlarmPolicy()
    retry: Retry = Retry()
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    channels: tuple[Channel, ...] = ()
    secrets: frozenset[str] = dataclasses.field(default=frozenset(), repr=False)

    def channel(self, name: str) -> Channel:
        for c in self.channels:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.channels) or "none configured"
        raise ConfigError(f"channel {name!r} is not configured; expected one of: {known}")


def sensor_groups(sensor_id: str, groups: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, ...]:
    """The groups a sensor belongs to: those whose glob patterns match it; else its id's
    prefix before the last ``_`` (``sensor_007`` -> ``sensor``), so every sensor has one."""
    got = tuple(name for name, patterns in groups if any(fnmatch.fnmatchcase(sensor_id, p) for p in patterns))
    if got:
        return got
    head, sep, _ = sensor_id.rpartition("_")
    return (head if sep and head else sensor_id,)


def matches(channel: Channel, note: Notification, groups: tuple[tuple[str, tuple[str, ...]], ...]) -> bool:
    """Whether a channel takes a notification (test notifications go to the channel asked)."""
    f = channel.filters
    a = note.alarm
    if f.severities and a.severity not in f.severities:
        return False
    if f.types and a.alarm_type not in f.types:
        return False
    if f.groups and not set(f.groups) & set(sensor_groups(a.sensor_id, groups)):
        return False
    return True


def redact(text: str, secrets: frozenset[str]) -> str:
    """``text`` with every resolved secret replaced by ``***`` (longest first)."""
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    return text


# -- parsing ---------------------------------------------------------------------------------
def parse_config(raw: Any, env: Mapping[str, str], source: str = "alerts.yaml") -> AlertConfig:
    """Validate a parsed YAML mapping; ``${VAR}`` references resolve from ``env``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    _only(raw, ("policy", "retry", "groups", "channels"), source, "")
    secrets: set[str] = set()
    policy = _policy(raw.get("policy") or {}, source)
    retry_raw = raw.get("retry") or {}
    _only(retry_raw, ("base_s", "max_s"), source, "retry.")
    retry = Retry(float(_num(retry_raw, "base_s", 5.0, source, "retry.")), float(_num(retry_raw, "max_s", 600.0, source, "retry.")))
    groups_raw = raw.get("groups") or {}
    if not isinstance(groups_raw, Mapping):
        raise ConfigError(f"{source}: groups must map a group name to a list of sensor id patterns")
    groups = tuple((str(k), _strs(v, source, f"groups.{k}")) for k, v in groups_raw.items())
    channels_raw = raw.get("channels") or {}
    if not isinstance(channels_raw, Mapping):
        raise ConfigError(f"{source}: channels must map a channel name to its settings")
    channels = tuple(_channel(str(name), spec, env, secrets, source) for name, spec in channels_raw.items())
    return AlertConfig(policy, retry, groups, channels, frozenset(secrets))


def _only(raw: Mapping, allowed: tuple[str, ...], source: str, prefix: str) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the file'} must be a mapping")
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{source}: unknown field {prefix}{k}; expected one of {', '.join(allowed)}")


def _num(raw: Mapping, key: str, default, source: str, prefix: str):
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{source}: {prefix}{key}={v!r} is invalid; expected a number")
    return v


def _strs(v: Any, source: str, field: str) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{source}: {field} must be a string or a list of strings, got {v!r}")
    return tuple(v)


def _policy(raw: Mapping, source: str) -> AlarmPolicy:
    fields = [f.name for f in dataclasses.fields(AlarmPolicy)]
    _only(raw, tuple(fields), source, "policy.")
    kwargs = dict(raw)
    if "types" in kwargs and kwargs["types"] is not None:
        kwargs["types"] = _strs(kwargs["types"], source, "policy.types")
    try:
        return AlarmPolicy(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{source}: policy: {exc}") from None


def _resolve(value: Any, env: Mapping[str, str], secrets: set[str], source: str, field: str) -> str:
    text = str(value)

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in env:
            raise UnsetVariable(f"{source}: {field} refers to ${{{name}}}, which is not set in the environment")
        secrets.add(env[name])
        return env[name]

    return _ENV_REF.sub(sub, text)


def _channel(name: str, spec: Any, env: Mapping[str, str], secrets: set[str], source: str) -> Channel:
    where = f"channels.{name}"
    if not _NAME.match(name):
        raise ConfigError(f"{source}: channel name {name!r} is invalid; expected 1-64 of A-Z a-z 0-9 _ . -")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source}: {where} must be a mapping")
    kind = spec.get("type")
    if kind not in CHANNEL_TYPES:
        raise ConfigError(f"{source}: {where}.type={kind!r} is invalid; expected one of {', '.join(CHANNEL_TYPES)}")
    common = ("type", "filters", "on_uncertain", "timeout_s")
    own = ("url", "format", "headers") if kind == "webhook" else ("host", "port", "starttls", "ssl", "username", "password", "from", "to")
    _only(spec, common + own, source, f"{where}.")
    f_raw = spec.get("filters") or {}
    _only(f_raw, ("groups", "severities", "types"), source, f"{where}.filters.")
    filters = Filters(*(_strs(f_raw.get(k, []), source, f"{where}.filters.{k}") for k in ("groups", "severities", "types")))
    for sev in filters.severities:
        if sev not in SEVERITIES:
            raise ConfigError(f"{source}: {where}.filters.severities: {sev!r} is invalid; expected some of {', '.join(SEVERITIES)}")
    for typ in filters.types:
        if typ not in ALARM_TYPES:
            raise ConfigError(f"{source}: {where}.filters.types: {typ!r} is invalid; expected some of {', '.join(ALARM_TYPES)}")
    on_uncertain = spec.get("on_uncertain", "resend")
    if on_uncertain not in ON_UNCERTAIN:
        raise ConfigError(f"{source}: {where}.on_uncertain={on_uncertain!r} is invalid; expected one of {', '.join(ON_UNCERTAIN)}")
    timeout = float(_num(spec, "timeout_s", 10.0, source, f"{where}."))
    channel = Channel(name, kind, filters, on_uncertain, timeout)
    try:
        return _endpoint(channel, spec, env, secrets, source)
    except UnsetVariable as exc:
        # the environment's, not the file's: this channel's notifications wait with this reason, the others go
        return dataclasses.replace(channel, unusable=str(exc))


def _endpoint(channel: Channel, spec: Mapping, env: Mapping[str, str], secrets: set[str], source: str) -> Channel:
    """``channel`` with where it sends to (its ``${VAR}`` references resolved)."""
    where, kind = f"channels.{channel.name}", channel.type
    res = lambda key, default="": _resolve(spec.get(key, default), env, secrets, source, f"{where}.{key}")  # noqa: E731
    if kind == "webhook":
        fmt = spec.get("format", "json")
        if fmt not in WEBHOOK_FORMATS:
            raise ConfigError(f"{source}: {where}.format={fmt!r} is invalid; expected one of {', '.join(WEBHOOK_FORMATS)}")
        headers_raw = spec.get("headers") or {}
        if not isinstance(headers_raw, Mapping):
            raise ConfigError(f"{source}: {where}.headers must map header names to values")
        url = res("url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: {where}.url must start with http:// or https://")
        headers = tuple((str(k), _resolve(v, env, secrets, source, f"{where}.headers.{k}")) for k, v in headers_raw.items())
        return dataclasses.replace(channel, url=url, format=fmt, headers=headers)
    host = res("host")
    if not host:
        raise ConfigError(f"{source}: {where}.host is required for an email channel")
    port = int(_num(spec, "port", 25, source, f"{where}."))
    to = tuple(_resolve(t, env, secrets, source, f"{where}.to") for t in _strs(spec.get("to", []), source, f"{where}.to"))
    sender = res("from")
    if not to or not sender:
        raise ConfigError(f"{source}: {where} needs `from` and at least one address in `to`")
    return dataclasses.replace(
        channel, host=host, port=port, starttls=bool(spec.get("starttls", False)), ssl=bool(spec.get("ssl", False)),
        username=res("username"), password=res("password"), sender=sender, to=to,
    )  # fmt: skip


# -- messages ------------------------------------------------------------------------------------
def _ts(us: int | None) -> str | None:
    if us is None:
        return None
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(note: Notification) -> str:
    """One line a person reads first: ``[CRITICAL] spike on sensor_003 (temperature): opened``."""
    a = note.alarm
    metric = f" ({a.metric})" if a.metric else ""
    return f"[{a.severity.upper()}] {a.alarm_type} on {a.sensor_id}{metric}: {note.event}"


def payload(note: Notification, channel_format: str = "json") -> dict[str, Any]:
    """The webhook body: every field of the alarm, or a Slack-compatible ``text`` + ``blocks``."""
    a = note.alarm
    body = {
        "notification_id": note.notification_id,
        "event": note.event,
        "alarm_id": a.alarm_id,
        "sensor_id": a.sensor_id,
        "alarm_type": a.alarm_type,
        "metric": a.metric,
        "severity": a.severity,
        "status": a.status,
        "first_seen": _ts(a.first_seen_us),
        "last_seen": _ts(a.last_seen_us),
        "value": a.value,
        "score": a.score,
        "message": a.message,
        "summary": summary(note),
    }
    if channel_format == "json":
        return body
    text = f"{summary(note)}: {a.message}" if a.message else summary(note)
    fields = [f"*{k}:* {body[k]}" for k in ("alarm_id", "status", "first_seen", "last_seen", "value", "score") if body[k] is not None]
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(fields)}]},
        ],
    }


def payload_bytes(note: Notification, channel_format: str = "json") -> bytes:
    return json.dumps(payload(note, channel_format), sort_keys=True).encode()


def email_message(note: Notification, channel: Channel, idempotency_key: str) -> EmailMessage:
    """The e-mail: the summary as subject, the fields as text; a Message-ID derived from the
    idempotency key, so a mail system that deduplicates by Message-ID drops a resend."""
    body = payload(note, "json")
    msg = EmailMessage()
    msg["Subject"] = summary(note)
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    msg["Message-ID"] = f"<{idempotency_key.replace(':', '.').replace('@', '.')}@iot-platform>"
    msg["X-Idempotency-Key"] = idempotency_key
    lines = [body["summary"], ""] + [f"{k}: {v}" for k, v in body.items() if k != "summary" and v is not None]
    msg.set_content("\n".join(lines) + "\n")
    return msg

