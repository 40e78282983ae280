"""Dagster on a real PostgreSQL server: a backfill from the CLI and a micro-batch run, recorded there.

The server is the session's (tests/servers/postgres.py), password-protected; each
test has its own database. IOT_DAGSTER_POSTGRES_URL is given without a driver
(``postgresql://``), the way a user writes it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from conftest_serial import cli_command

from iot_platform.core import simulator as sim
from iot_platform.core.batching import Cursor, decide
from iot_platform.orchestration.micro_batch import micro_batch_job

pytestmark = pytest.mark.postgres
DAYS = ["2024-01-01", "2024-01-02"]
LAKE_ASSETS = ("anomalies", "fault_labels", "readings", "window_stats")


def _env(data_dir: Path, home: Path, url: str) -> dict[str, str]:
    return dict(os.environ, IOT_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home), IOT_DAGSTER_POSTGRES_URL=url,
                IOT_FLEET_SIZE="3", IOT_SAMPLE_INTERVAL_S="10")  # fmt: skip


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_a_cli_backfill_is_recorded_in_postgres(tmp_path, postgres_url, postgres_server):
    data_dir, home = tmp_path / "data", tmp_path / "home"
    proc = subprocess.run([*cli_command(), "backfill", *DAYS], env=_env(data_dir, home, postgres_url),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    run_id = proc.stdout.splitlines()[-1].rsplit(" ", 1)[1]

    # the run, its events and the partitions' materializations are rows in PostgreSQL
    db = _database(postgres_url)
    assert postgres_server.psql(db, "SELECT run_id, pipeline_name, status FROM runs").splitlines() == [
        f"{run_id}|__ASSET_JOB|SUCCESS"
    ]
    materialized = postgres_server.psql(
        db, f"SELECT asset_key, partition FROM event_logs WHERE run_id = '{run_id}' "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY asset_key, partition",
    ).splitlines()  # fmt: skip
    assert materialized == [f'["{a}"]|{d}' for a in LAKE_ASSETS for d in DAYS]
    # nothing went to SQLite, and the password is in no file of the Dagster home
    assert not list(home.rglob("*.db"))
    assert all(postgres_server.password not in p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())
    assert "postgres_url:\n      env: IOT_DAGSTER_POSTGRES_URL\n" in (home / "dagster.yaml").read_text()


def test_a_micro_batch_run_is_recorded_in_postgres_with_its_queue_lane(tmp_path, postgres_url, postgres_server, monkeypatch,
                                                                       resources, data_dir):  # fmt: skip
    from iot_platform.cli.dagster_home import open_instance, use_dagster_home

    for name, value in _env(data_dir, tmp_path / "home", postgres_url).items():
        monkeypatch.setenv(name, value)
    home = use_dagster_home()
    day0 = sim.day_start_us(dt.date(2024, 1, 3))
    batch = decide(Cursor(), day0 + 75_000_000, True, []).batch
    assert batch is not None
    with open_instance(home) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        queue = instance.get_concurrency_config().run_queue_config
        assert [dict(lim) for lim in queue.tag_concurrency_limits] == [
            {"key": "iot/queue", "value": "micro_batch", "limit": 1},
            {"key": "dagster/backfill", "limit": 2},
        ]
        # the resources of this test's data root (the code location's were read at its first import)
        result = micro_batch_job.execute_in_process(
            run_config={"ops": {"micro_batch": {"config": {"batch_id": batch.batch_id, "until_us": batch.until_us}}}},
            instance=instance, resources=resources,
        )  # fmt: skip
        assert result.success
    db = _database(postgres_url)
    assert postgres_server.psql(db, "SELECT run_id, pipeline_name, status FROM runs").splitlines() == [
        f"{result.run_id}|micro_batch_job|SUCCESS"
    ]
    assert postgres_server.psql(db, f"SELECT key, value FROM run_tags WHERE run_id = '{result.run_id}' AND key = 'iot/queue'") == (
        "iot/queue|micro_batch\n"
    )
    readings = postgres_server.psql(
        db, f"SELECT partition FROM event_logs WHERE run_id = '{result.run_id}' AND dagster_event_type = "
            "'ASSET_MATERIALIZATION' AND asset_key = '[\"readings\"]'",
    )  # fmt: skip
    assert readings == "2024-01-03\n"


def test_a_wrong_password_is_one_line_without_the_password(tmp_path, postgres_url, postgres_server):
    bad = postgres_url.replace(f":{postgres_server.password}@", ":not-the-password@")
    proc = subprocess.run([*cli_command(), "backfill", *DAYS], env=_env(tmp_path / "data", tmp_path / "home", bad),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    db = _database(postgres_url)
    assert proc.stderr == (
        f"Error: PostgreSQL at 127.0.0.1:{postgres_server.port}/{db} (IOT_DAGSTER_POSTGRES_URL) is unreachable: "
        'connection to server at "127.0.0.1", port ' f'{postgres_server.port} failed: FATAL:  password authentication failed for user "postgres"\n'
    )


def test_a_backfill_on_two_workers_with_postgres_builds_the_same_lake_as_one(tmp_path, postgres_url, postgres_server, monkeypatch):
    from test_backfill_workers import _backfill, assert_spread_like_one_worker

    one, two = tmp_path / "one", tmp_path / "two"
    p1 = _backfill(one)  # SQLite, one worker: the reference
    assert p1.returncode == 0, p1.stderr
    p2 = _backfill(two, "--workers", "2", extra_env={"IOT_DAGSTER_POSTGRES_URL": postgres_url})
    assert p2.returncode == 0, p2.stderr
    assert "Warning" not in p2.stderr, p2.stderr
    # the step processes wrote their events to PostgreSQL too (read back through the home's dagster.yaml)
    monkeypatch.setenv("IOT_DAGSTER_POSTGRES_URL", postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    assert_spread_like_one_worker(one, two, p2)
    db = _database(postgres_url)
    assert postgres_server.psql(db, "SELECT pipeline_name, status FROM runs") == "backfill_days|SUCCESS\n"
    assert not list((two / "home").rglob("*.db"))


@pytest.mark.slow
def test_the_daemon_on_postgres_queues_and_runs_a_micro_batch_in_its_lane(tmp_path, postgres_url, postgres_server, monkeypatch):
    """The real `dagster-daemon` on a PostgreSQL home made by iot-platform: sensor, queue, launch, success."""
    import sys
    import time

    from iot_platform.cli.dagster_home import open_instance, use_dagster_home

    project_root = Path(__file__).resolve().parents[1]
    for name, value in _env(tmp_path / "data", tmp_path / "home", postgres_url).items():
        monkeypatch.setenv(name, value)
    home = use_dagster_home()  # writes the home's dagster.yaml, makes the driver explicit in os.environ
    with open_instance(home):  # creates the tables first, as `iot-platform ui` does
        pass
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"],
        cwd=project_root, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    db = _database(postgres_url)
    try:
        deadline = time.monotonic() + 240
        statuses: list[str] = []
        while "SUCCESS" not in statuses:
            assert proc.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, f"no successful micro-batch run within 240 s: {statuses}"
            time.sleep(2)
            statuses = postgres_server.psql(db, "SELECT status FROM runs WHERE pipeline_name = 'micro_batch_job'").split()
            assert "FAILURE" not in statuses
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    # the run went through the queue: enqueued by the sensor, launched by the daemon when its lane was free
    run_id = postgres_server.psql(db, "SELECT run_id FROM runs WHERE status = 'SUCCESS' AND pipeline_name = 'micro_batch_job' LIMIT 1").strip()
    events = postgres_server.psql(
        db, f"SELECT dagster_event_type FROM event_logs WHERE run_id = '{run_id}' "
            "AND dagster_event_type IN ('PIPELINE_ENQUEUED', 'PIPELINE_STARTING', 'PIPELINE_SUCCESS') ORDER BY id",
    ).split()  # fmt: skip
    assert events == ["PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"]
    assert postgres_server.psql(db, f"SELECT value FROM run_tags WHERE run_id = '{run_id}' AND key = 'iot/queue'") == "micro_batch\n"
    assert not list(home.rglob("*.db"))


def _graphql(port: int, query: str) -> dict:
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["data"]


@pytest.mark.slow
def test_the_ui_on_postgres_shows_a_run_the_cli_recorded_there(tmp_path, postgres_url, postgres_server):
    import signal
    import socket
    import time

    env = _env(tmp_path / "data", tmp_path / "home", postgres_url)
    proc = subprocess.run([*cli_command(), "materialize", "--select", "readings", "--partition", "2024-01-03"],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.splitlines()[-1].rsplit(" ", 1)[1]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "console.log"
    with open(log, "w") as out:
        ui = subprocess.Popen([*cli_command(), "ui", "--port", str(port)], cwd=Path(__file__).resolve().parents[1],
                              env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        runs = None
        while runs is None:
            assert ui.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
            try:
                runs = _graphql(port, "{ runsOrError { ... on Runs { results { runId status } } } }")["runsOrError"]["results"]
            except (OSError, KeyError, TypeError):
                runs = None
        assert {"runId": run_id, "status": "SUCCESS"} in runs
    finally:
        ui.send_signal(signal.SIGINT)
        code = ui.wait(60)
    console = log.read_text()
    assert code == 0, console[-3000:]
    assert "Warning:" not in console and postgres_server.password not in console
