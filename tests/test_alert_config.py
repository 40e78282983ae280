"""Alerting configuration (core.alert_config): parsing, ${ENV} secrets, filters, groups, backoff."""

from __future__ import annotations

import pytest

from iot_platform.core.alarms import Alarm, Notification
from iot_platform.core.alert_config import ConfigError, Retry, matches, parse_config, redact, sensor_groups

ENV = {"URL": "https://hooks.example.org/T000/B000/XXXX", "PW": "hunter2"}


def note(sensor="sensor_001", typ="spike", severity="warning") -> Notification:
    a = Alarm("a1", sensor, typ, "temperature", severity, "active", 0, 1, 30.0, 4.0, "m", ("a1",), 0, 0)
    return Notification("a1:opened", "a1", "opened", 0, a)


def test_a_full_config_parses_and_hides_its_secrets():
    c = parse_config(
        {
            "policy": {"types": ["spike", "flatline"], "repeat_interval_s": 3600},
            "groups": {"lab": ["sensor_00*"], "roof": "roof_*"},
            "channels": {
                "ops": {"type": "webhook", "url": "${URL}", "format": "slack", "filters": {"severities": "critical"}},
                "mail": {"type": "email", "host": "smtp.example.org", "port": 587, "starttls": True, "username": "bot",
                         "password": "${PW}", "from": "a@example.org", "to": "b@example.org"},
            },
        },
        ENV,
    )  # fmt: skip
    assert c.policy.types == ("spike", "flatline") and c.policy.repeat_interval_s == 3600
    assert c.groups == (("lab", ("sensor_00*",)), ("roof", ("roof_*",)))
    ops, mail = c.channels
    assert (ops.url, ops.format, ops.filters.severities) == (ENV["URL"], "slack", ("critical",))
    assert (mail.port, mail.starttls, mail.password, mail.to) == (587, True, "hunter2", ("b@example.org",))
    assert c.secrets == frozenset({ENV["URL"], "hunter2"})
    assert "hunter2" not in repr(c) and "XXXX" not in repr(c)
    assert redact(f"POST {ENV['URL']} failed, password hunter2", c.secrets) == "POST *** failed, password ***"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"chanels": {}}, "alerts.yaml: unknown field chanels; expected one of policy, retry, groups, channels"),
        ({"channels": {"x": {"type": "sms"}}}, "alerts.yaml: channels.x.type='sms' is invalid; expected one of webhook, email"),
        ({"channels": {"x": {"type": "webhook", "url": "ftp://a"}}}, "alerts.yaml: channels.x.url must start with http:// or https://"),
        ({"channels": {"x": {"type": "webhook", "url": "http://a", "filters": {"severities": ["info"]}}}},
         "alerts.yaml: channels.x.filters.severities: 'info' is invalid; expected some of warning, critical"),
        ({"channels": {"x": {"type": "email", "host": "h", "from": "a@b"}}}, "alerts.yaml: channels.x needs `from` and at least one address in `to`"),
        ({"policy": {"min_severity": "high"}}, "alerts.yaml: policy: min_severity='high' is invalid; expected one of warning, critical"),
        ({"channels": {"x": {"type": "webhook", "url": "http://a", "on_uncertain": "maybe"}}},
         "alerts.yaml: channels.x.on_uncertain='maybe' is invalid; expected one of resend, skip"),
    ],
)
def test_bad_config_names_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, ENV)


def test_an_unset_variable_makes_its_channel_unusable_not_the_file():
    raw = {"channels": {"x": {"type": "webhook", "url": "${NOPE}"}, "y": {"type": "webhook", "url": "${URL}"},
                        "z": {"type": "webhook", "url": "${NOPE}", "format": "xml"}}}  # fmt: skip
    with pytest.raises(ConfigError, match="alerts.yaml: channels.z.format='xml' is invalid"):  # the file's own mistakes still stop it
        parse_config(raw, ENV)
    del raw["channels"]["z"]
    x, y = parse_config(raw, ENV).channels
    assert x.unusable == "alerts.yaml: channels.x.url refers to ${NOPE}, which is not set in the environment"
    assert (y.unusable, y.url) == ("", ENV["URL"])


@pytest.mark.parametrize(
    "sensor, groups, expected",
    [
        ("sensor_007", (), ("sensor",)),
        ("roof_a_1", (), ("roof_a",)),
        ("node7", (), ("node7",)),
        ("sensor_007", (("lab", ("sensor_00*",)), ("all", ("*",))), ("lab", "all")),
    ],
)
def test_sensor_groups(sensor, groups, expected):
    assert sensor_groups(sensor, groups) == expected


@pytest.mark.parametrize(
    "filters, n, expected",
    [
        ({}, note(), True),
        ({"severities": ["critical"]}, note(), False),
        ({"severities": ["critical"]}, note(severity="critical"), True),
        ({"types": ["no_data", "flatline"]}, note(), False),
        ({"groups": ["lab"]}, note(sensor="sensor_001"), True),
        ({"groups": ["lab"]}, note(sensor="roof_1"), False),
    ],
)
def test_channel_filters(filters, n, expected):
    c = parse_config({"groups": {"lab": ["sensor_*"]}, "channels": {"x": {"type": "webhook", "url": "http://a", "filters": filters}}}, {})
    assert matches(c.channels[0], n, c.groups) is expected


def test_backoff_doubles_up_to_the_cap():
    assert [Retry(5, 60).delay_s(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
