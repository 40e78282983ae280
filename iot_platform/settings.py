"""Settings read from the environment, at the edge (CLI and Dagster resources).

The pure core never calls this module: it receives plain parameters.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "IOT_DATA_DIR"


def data_dir() -> Path:
    """The data root: ``$IOT_DATA_DIR``, default ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data").resolve()


def landing_dir(root: Path | None = None) -> Path:
    """Where capture and import drop complete Parquet files for ingestion."""
    return (root or data_dir()) / "landing"

# -- the Dagster instance (read by iot_platform.cli.dagster_home) ----------------------

DAGSTER_POSTGRES_URL_ENV = "IOT_DAGSTER_POSTGRES_URL"
MAX_BACKFILL_RUNS_ENV = "IOT_MAX_BACKFILL_RUNS"
DEFAULT_MAX_BACKFILL_RUNS = 2  # one per core of the reference machine
# The run tag that puts a run in the micro-batch lane of the run queue (at most one at a time).
QUEUE_TAG = "iot/queue"
MICRO_BATCH_QUEUE = "micro_batch"


def positive_int_env(name: str) -> int | None:
    """``$name`` as a whole number >= 1; None when unset or empty. A bad value is one ValueError line."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name}={raw!r} is invalid; expected a whole number >= 1")
    return n
