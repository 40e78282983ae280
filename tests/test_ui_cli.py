"""`iot-platform ui` and the Dagster home it shares with the CLI: quiet, private, explained."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from conftest_serial import cli_command

from iot_platform.cli import build_parser
from iot_platform.cli.dagster_home import dagster_home, open_instance

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_loading_the_definitions_emits_no_warning():
    # -W error: any warning (Dagster's Beta/Preview/Supersession/Deprecation included) fails the load;
    # the ones we checked are filtered by exact message in iot_platform/orchestration/__init__.py.
    code = (
        "import dagster as dg\n"
        "from iot_platform.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "defs.get_repository_def()\n"
        "dg.AssetSelection.from_string('group:lake').resolve(defs.resolve_asset_graph())\n"
        "print('loaded')\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "loaded\n", "")


def test_the_dagster_home_turns_telemetry_and_the_community_popup_off(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = dagster_home()
    assert home == (tmp_path / "home").resolve()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.telemetry_enabled is False
        assert instance.nux_enabled is False
        assert instance.run_retries_enabled is True
    # An existing dagster.yaml is the user's: it is never rewritten.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    dagster_home()
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"


def test_ui_help_explains_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    ui = sub.choices["ui"]
    text = ui.format_help()
    options = [a for a in ui._actions if a.option_strings and a.dest != "help"]
    assert [a.dest for a in options] == ["host", "port"]
    for action in options:
        assert action.help and len(action.help) > 20, action.dest
        assert action.option_strings[0] in text
    assert "DAGSTER_HOME" in text and "telemetry" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_assets_with_a_clean_console_and_stops_on_ctrl_c(tmp_path: Path):
    """Ctrl-C as a terminal sends it, to the whole foreground process group, as the daemon launches a run."""
    port = _free_port()
    env = dict(os.environ, IOT_DATA_DIR=str(tmp_path / "data"), IOT_FLEET_SIZE="2", IOT_SAMPLE_INTERVAL_S="60")
    env.pop("DAGSTER_HOME", None)
    log = tmp_path / "console.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*cli_command(), "ui", "--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        nodes: list = []
        while not nodes:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode(),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                with urllib.request.urlopen(req, timeout=10) as resp:
                    nodes = json.loads(resp.read()).get("data", {}).get("assetNodes") or []
            except OSError:
                pass
        assert {"readings", "anomalies"} <= {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").is_file()
        # the next time the daemon's run queue launches what the sensors requested (a run's process starting)
        launches = log.read_text().count("Priority sorting")
        while log.read_text().count("Priority sorting") == launches and time.monotonic() < deadline + 60:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(90)
    console = log.read_text()
    assert code == 0, console[-3000:]
    assert "Warning:" not in console, console  # Python warnings print "<Category>Warning: ..."
    assert "Traceback" not in console, console[-5000:]
    with open_instance(tmp_path / "data" / "dagster_home") as instance:
        runs = instance.get_runs()
        # finished, or still queued for the next start; none failed or cut short by the Ctrl-C
        statuses = {r.status for r in runs}
        ok = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.QUEUED}
        assert dg.DagsterRunStatus.SUCCESS in statuses and statuses <= ok, [(r.job_name, r.status) for r in runs]
    assert "superseded" not in console
    assert [c for c in _processes_with("dagster-webserver") if f"-p {port}" in c] == []  # both children stopped


def test_a_killed_ui_leaves_no_webserver_or_daemon_behind(tmp_path: Path):
    data = tmp_path / "data"
    env = dict(os.environ, IOT_DATA_DIR=str(data), IOT_FLEET_SIZE="2", IOT_SAMPLE_INTERVAL_S="60")
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen([*cli_command(), "ui", "--port", str(_free_port())], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    children = lambda: _pids_with_env(f"IOT_DATA_DIR={data}", ("dagster-webserver", "dagster-daemon"))  # noqa: E731
    try:
        deadline = time.monotonic() + 120
        while len(children()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        proc.kill()  # SIGKILL: no handler of ours runs; the kernel signals the children (PR_SET_PDEATHSIG)
        proc.wait()
        deadline = time.monotonic() + 60
        while children() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert children() == []
    finally:
        proc.kill()
        for pid in children():
            os.kill(pid, signal.SIGKILL)


def _pids_with_env(entry: str, commands: tuple[str, ...]) -> list[int]:
    """Processes running one of ``commands`` whose environment holds ``entry`` (``NAME=value``), from /proc."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if any(c in cmdline for c in commands) and entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _processes_with(word: str) -> list[str]:
    """Command lines of running processes that contain ``word`` (from /proc, no pgrep needed)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if word in text:
            found.append(text)
    return found
