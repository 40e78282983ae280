"""How fresh the live tables must be: today's partitions follow the 30-second micro-batches.

Declared with Dagster's freshness policies (``dg.FreshnessPolicy``, which
superseded freshness checks in 1.12; evaluated by the daemon that `dagster dev`
and `iot-platform ui` run). A micro-batch records a materialization of
`readings` and `anomalies` for today's partition every 30 s while new readings
arrive, so their last update is minutes old; a stalled sensor, daemon or
failing batch turns the asset WARN after 3 minutes (six batches missed) and
FAIL (red) after 10.

The policy is evaluated per asset, not per partition: a backfill of an old day
also counts as an update. Backfills are occasional, batches are every 30 s,
so that blind spot lasts one fail window at most.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

LIVE = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=10), warn_window=dt.timedelta(minutes=3))
