"""``iot-platform ui``: the Dagster web UI and daemon over the data root's Dagster home.

Runs ``dagster-webserver`` (the UI) and ``dagster-daemon run`` (sensors,
schedules, run queue, backfills) side by side, as ``dagster dev`` does; that
command is superseded in Dagster 1.13, and these two are Dagster's deployment
commands. Both use the Dagster home of ``iot_platform.cli.dagster_home``, the
same one ``iot-platform backfill`` and ``materialize`` record their runs in.
Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from iot_platform.cli import CliError
from iot_platform.cli.dagster_home import open_instance, use_dagster_home


def _executable(name: str) -> str:
    """A Dagster command from this virtualenv (found even when it is not activated), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise CliError(f"the `{name}` command was not found; install the package with pip in this virtualenv")
    return found


def code_target() -> list[str]:
    """The code location: workspace.yaml when started from the project root, else the installed module."""
    return ["-w", "workspace.yaml"] if Path("workspace.yaml").is_file() else ["-m", "iot_platform.definitions"]


def run(args: argparse.Namespace) -> int:
    home = use_dagster_home()
    # Create the instance's storage (SQLite or PostgreSQL) here, once: the webserver and the daemon
    # starting together on a new Dagster home would both create its tables, and one of them would fail.
    with open_instance(home):
        pass
    target = code_target()
    webserver = [_executable("dagster-webserver"), *target, "-h", args.host, "-p", str(args.port)]
    daemon = [_executable("dagster-daemon"), "run", *target]
    print(
        f"Dagster home: {home}\nData root: {os.environ['IOT_DATA_DIR']}\nUI: http://{args.host}:{args.port}\n"
        "Live dashboard: run `iot-platform dashboard` in another terminal (http://127.0.0.1:8050)",
        flush=True,
    )
    procs: list[subprocess.Popen] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        procs.append(subprocess.Popen(daemon))
        procs.append(subprocess.Popen(webserver))
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        exited = [p for p in procs if p.poll() is not None]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping:
        return 0
    names = ", ".join(Path(p.args[0]).name for p in exited)  # type: ignore[index]
    raise CliError(f"{names} exited with code {exited[0].returncode}; see its messages above")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is not valid; expected a whole number from 1 to 65535")
    return port


def register(sub) -> None:
    p = sub.add_parser(
        "ui",
        help="open the Dagster web UI, with the daemon (sensors, schedules and backfills run)",
        description=(
            "Start the Dagster web UI and the Dagster daemon over the data root "
            "($IOT_DATA_DIR, default ./data). Run history lives in $DAGSTER_HOME (default "
            "$IOT_DATA_DIR/dagster_home), which `iot-platform backfill` and `materialize` share, so their runs "
            "show here. The Dagster home is created with telemetry and the first-visit pop-up off "
            "(see its dagster.yaml). With IOT_DAGSTER_POSTGRES_URL set when the home is created, run history "
            "lives in that PostgreSQL database instead. Loads workspace.yaml when started in the project root, else the "
            "installed iot_platform.definitions. Ctrl-C stops both processes."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address the UI listens on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=3000, help="TCP port of the UI (default 3000)")
    p.set_defaults(func=run)
