"""The code location loads the way `dagster dev` loads it, and the web UI serves it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import tomllib
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]

EXPECTED_ASSETS = {"readings", "fault_labels", "window_stats", "anomalies", "open_alerts", "sensor_health_daily", "sensors"}


def test_workspace_yaml_and_pyproject_name_the_same_module():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    tool = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert entry["python_module"]["module_name"] == tool["module_name"] == "iot_platform.definitions"
    assert entry["python_module"]["location_name"] == tool["code_location_name"]


def test_definitions_load_and_resolve():
    from iot_platform.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys
    dg.Definitions.validate_loadable(defs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_webserver_starts_from_workspace_yaml_and_lists_the_assets(tmp_path: Path, data_dir: Path):
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, DAGSTER_HOME=str(home), IOT_DATA_DIR=str(data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "webserver did not come up in 120 s"
                time.sleep(0.5)
        while True:  # the code location loads after the server answers
            data = _graphql(port, "{ assetNodes { assetKey { path } } }")
            nodes = data.get("data", {}).get("assetNodes") or []
            if nodes or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert EXPECTED_ASSETS <= keys, data
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_live_tables_declare_their_freshness():
    """Today's readings and anomalies follow the 30 s micro-batches: WARN after 3 min, FAIL after 10."""
    import datetime as dt

    from iot_platform.definitions import defs

    graph = defs.get_repository_def().asset_graph
    policies = {k: graph.get(dg.AssetKey(k)).freshness_policy for k in ("readings", "anomalies", "window_stats")}
    assert {k: (p.warn_window.to_timedelta(), p.fail_window.to_timedelta()) for k, p in policies.items() if p} == {
        "readings": (dt.timedelta(minutes=3), dt.timedelta(minutes=10)),
        "anomalies": (dt.timedelta(minutes=3), dt.timedelta(minutes=10)),
    }
