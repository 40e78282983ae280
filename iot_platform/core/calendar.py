"""Time units and the UTC calendar of the lake's daily partitions: their one home.

Timestamps are integers of microseconds since the Unix epoch (UTC) throughout
the platform; a daily partition is a UTC day ``[day_start_us(d), day_start_us(d) + DAY_US)``.
"""

from __future__ import annotations

import datetime as dt

US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_DATE = EPOCH.date()


def day_start_us(day: dt.date) -> int:
    """The first microsecond of the UTC day ``day``."""
    return (day - EPOCH_DATE).days * DAY_US


def day_of_us(ts_us: int) -> dt.date:
    """The UTC day holding the microsecond ``ts_us``."""
    return EPOCH_DATE + dt.timedelta(days=ts_us // DAY_US)


def to_us(t: dt.datetime) -> int:
    """A timezone-aware datetime as microseconds since the epoch (exact, no float)."""
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def from_us(ts_us: int) -> dt.datetime:
    """Microseconds since the epoch as a UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=int(ts_us))
