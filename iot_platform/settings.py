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
