"""The one Dagster instance of a data root, shared by ``ui``, ``backfill`` and ``materialize``.

Run history, sensor cursors and schedule state live in ``$DAGSTER_HOME``
(default ``$IOT_DATA_DIR/dagster_home``), never in a temporary directory, so
they survive a restart of the UI, and a run started from the command line
shows in the UI.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from iot_platform.settings import data_dir

DAGSTER_YAML = """\
# Written by iot-platform on first use of this Dagster home; edit freely.
# No usage statistics are sent to Dagster Labs; set `enabled: true` to send them.
telemetry:
  enabled: false
# No "Join the Dagster community" pop-up on the UI's first visit.
nux:
  enabled: false
# A failed micro-batch run is retried; each run ingests everything still pending,
# so a retry neither loses nor duplicates a reading.
run_retries:
  enabled: true
  max_retries: 2
sensors:
  use_threads: true
  num_workers: 2
"""


def dagster_home() -> Path:
    """``$DAGSTER_HOME`` or ``<data root>/dagster_home``, created with our dagster.yaml if new."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def use_dagster_home() -> Path:
    """Point this process (and the processes it starts) at the data root's Dagster home."""
    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("IOT_DATA_DIR", str(data_dir()))
    return home


def open_instance(home: Path):
    """The persistent ``DagsterInstance`` of ``home`` (use it as a context manager)."""
    import dagster as dg

    # Dagster migrates its SQLite storage with alembic, which logs a dozen INFO lines per open.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return dg.DagsterInstance.from_config(str(home))
