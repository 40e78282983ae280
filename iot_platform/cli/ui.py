"""``iot-platform ui``: open the Dagster web UI with a persistent Dagster home.

Run history, sensor cursors and schedule state live in ``$DAGSTER_HOME``
(default ``$IOT_DATA_DIR/dagster_home``), never in a temporary directory, so
they survive a restart of the UI.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from iot_platform.settings import data_dir

DAGSTER_YAML = """\
# Written by `iot-platform ui` on first start; edit freely.
telemetry:
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
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def run(args: argparse.Namespace) -> int:
    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("IOT_DATA_DIR", str(data_dir()))
    dagster = shutil.which("dagster")
    if dagster is None:
        from iot_platform.cli import CliError

        raise CliError("the `dagster` command is not on PATH; activate the virtualenv the package was installed in")
    target = ["-w", "workspace.yaml"] if Path("workspace.yaml").is_file() else ["-m", "iot_platform.definitions"]
    print(f"Dagster home: {home}\nData root: {os.environ['IOT_DATA_DIR']}\nUI: http://{args.host}:{args.port}", flush=True)
    os.execv(dagster, [dagster, "dev", *target, "-h", args.host, "-p", str(args.port)])
    return 0  # pragma: no cover - execv does not return


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the Dagster web UI (with the daemon: sensors and schedules run)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=run)
