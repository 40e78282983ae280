"""The daily UTC partitions shared by every lake asset."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

START_DATE_ENV = "IOT_START_DATE"
DEFAULT_START_DATE = "2024-01-01"


def start_date() -> str:
    raw = os.environ.get(START_DATE_ENV) or DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError(f"{START_DATE_ENV}={raw!r} is invalid; expected a date like 2024-01-01") from None


# end_offset=1: today's partition exists, so micro-batches have somewhere to go.
daily_partitions = dg.DailyPartitionsDefinition(start_date=start_date(), timezone="UTC", end_offset=1)


def day_of(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)
