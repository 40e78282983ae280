"""``iot-platform ui``: the Dagster web UI and daemon over the data root's Dagster home.

Runs ``dagster-webserver`` (the UI) and ``dagster-daemon run`` (sensors,
schedules, run queue, backfills) side by side, as ``dagster dev`` does; that
command is superseded in Dagster 1.13, and these two are Dagster's deployment
commands. Both use the Dagster home of ``iot_platform.cli.dagster_home``, the
same one ``iot-platform backfill`` and ``materialize`` record their runs in.
Ctrl-C stops both, cleanly: the two run in a process group of their own, so a
terminal's Ctrl-C (which signals the whole foreground group) reaches this command
only; it stops the daemon first (no new run is launched), lets the runs in flight
finish (up to ``RUN_GRACE_S``), then stops the webserver. A run the signal caught
while starting used to fail (red in the UI) with a traceback on the console.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


RUN_GRACE_S = 30.0  # how long Ctrl-C waits for the runs in flight before it stops them


def _die_with_parent() -> None:
    """In the child before it runs: SIGTERM when this command dies, however (Linux's PR_SET_PDEATHSIG), so a
    killed ``iot-platform ui`` never leaves a webserver holding its port."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the signal handlers below still stop both
        pass


def _start(cmd: list[str]) -> subprocess.Popen:
    # a process group of its own: a terminal's Ctrl-C signals this command, not the runs being launched
    return subprocess.Popen(cmd, process_group=0, preexec_fn=_die_with_parent)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(p: subprocess.Popen, timeout: float = 15.0) -> None:
    if p.poll() is None:
        p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _stop_all(started: list[subprocess.Popen], hurry: Callable[[], bool]) -> None:
    """The daemon first (it launches runs), then the runs it started (up to RUN_GRACE_S, or until ``hurry``), then
    the webserver."""
    if not started:
        return
    daemon, *rest = started
    _stop(daemon)
    deadline = time.monotonic() + RUN_GRACE_S
    if _group_alive(daemon.pid) and not hurry():
        print("waiting for the runs in flight to finish (Ctrl-C again: stop them now)", flush=True)
    while _group_alive(daemon.pid) and time.monotonic() < deadline and not hurry():
        time.sleep(0.2)
    if _group_alive(daemon.pid):
        os.killpg(daemon.pid, signal.SIGTERM)
    for p in rest:
        _stop(p)


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
    procs: list[subprocess.Popen] = []  # the daemon, then the webserver
    signals: list[int] = []

    def stop(signum: int, frame: object) -> None:
        signals.append(signum)

    # SIGHUP too: the children are out of the terminal's foreground group, so closing it reaches only us
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        procs.append(_start(daemon))
        procs.append(_start(webserver))
        while not signals and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        exited = [p for p in procs if p.poll() is not None]
    finally:
        _stop_all(procs, hurry=lambda: len(signals) > 1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signals:
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
