"""The dagster.yaml of a new Dagster home: SQLite by default, PostgreSQL on request, the run queue's lanes.

No server needed here; tests/test_dagster_postgres.py runs the same against a real PostgreSQL.
"""

from __future__ import annotations

import dagster as dg
import pytest

from iot_platform.cli import CliError, main
from iot_platform.cli.dagster_home import dagster_home, instance_yaml, postgres_sqlalchemy_url
from iot_platform.definitions import defs


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in ("IOT_DAGSTER_POSTGRES_URL", "IOT_MAX_BACKFILL_RUNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _lanes(instance: dg.DagsterInstance) -> tuple[int, list[dict]]:
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None
    return queue.max_concurrent_runs, [dict(limit) for limit in queue.tag_concurrency_limits]


def test_the_default_home_is_sqlite_with_a_micro_batch_lane_and_a_backfill_lane(home):
    dagster_home()
    text = (home / "dagster.yaml").read_text()
    assert text == instance_yaml(postgres=False, backfills=2)
    assert "storage" not in text and "postgres" not in text
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert _lanes(instance) == (10, [
            {"key": "iot/queue", "value": "micro_batch", "limit": 1},
            {"key": "dagster/backfill", "limit": 2},
        ])  # fmt: skip
        # what was there before stays: telemetry off, retries on
        assert (instance.telemetry_enabled, instance.nux_enabled, instance.run_retries_enabled) == (False, False, True)


def test_every_micro_batch_run_carries_the_lane_tag():
    assert defs.resolve_job_def("micro_batch_job").tags == {"dagster/max_retries": "2", "iot/queue": "micro_batch"}


@pytest.mark.parametrize("n, total", [("1", 10), ("6", 10), ("12", 16)])
def test_the_backfill_lane_follows_IOT_MAX_BACKFILL_RUNS(home, monkeypatch, n, total):
    monkeypatch.setenv("IOT_MAX_BACKFILL_RUNS", n)
    dagster_home()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert _lanes(instance) == (total, [
            {"key": "iot/queue", "value": "micro_batch", "limit": 1},
            {"key": "dagster/backfill", "limit": int(n)},
        ])  # fmt: skip
    dagster_home()  # the same value again: fine


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_backfill_limit_is_named(home, monkeypatch, raw):
    monkeypatch.setenv("IOT_MAX_BACKFILL_RUNS", raw)
    with pytest.raises(CliError, match=rf"^IOT_MAX_BACKFILL_RUNS='{raw}' is invalid; expected a whole number >= 1$"):
        dagster_home()
    assert not (home / "dagster.yaml").exists()


def test_an_existing_home_is_never_rewritten_but_a_disagreement_is_an_error(home, monkeypatch):
    dagster_home()
    monkeypatch.setenv("IOT_MAX_BACKFILL_RUNS", "3")
    with pytest.raises(CliError, match=r"IOT_MAX_BACKFILL_RUNS=3 but .*dagster.yaml limits backfill runs to 2; edit its"):
        dagster_home()
    monkeypatch.delenv("IOT_MAX_BACKFILL_RUNS")
    monkeypatch.setenv("IOT_DAGSTER_POSTGRES_URL", "postgresql://u:pw@127.0.0.1:5/db")
    with pytest.raises(CliError, match=r"IOT_DAGSTER_POSTGRES_URL is set but .*dagster.yaml keeps the runs in this directory \(SQLite\)"):
        dagster_home()
    assert (home / "dagster.yaml").read_text() == instance_yaml(postgres=False, backfills=2)


def test_a_postgres_home_names_the_variable_never_the_password(home, monkeypatch):
    monkeypatch.setenv("IOT_DAGSTER_POSTGRES_URL", "postgresql://iot:pa55word@db.example:5432/dagster")
    dagster_home()
    text = (home / "dagster.yaml").read_text()
    assert text == instance_yaml(postgres=True, backfills=2)
    assert text.endswith("storage:\n  postgres:\n    postgres_url:\n      env: IOT_DAGSTER_POSTGRES_URL\n")
    assert "pa55word" not in text and "example" not in text
    monkeypatch.delenv("IOT_DAGSTER_POSTGRES_URL")
    with pytest.raises(CliError, match=r"dagster.yaml keeps the runs in PostgreSQL at \$IOT_DAGSTER_POSTGRES_URL, which is not set; set it$"):
        dagster_home()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg2://u:p@h:5432/d"),
        ("postgres://u:p@h/d", "postgresql+psycopg2://u:p@h/d"),
        ("postgresql+psycopg2://u:p%40x@h:6543/d?sslmode=require", "postgresql+psycopg2://u:p%40x@h:6543/d?sslmode=require"),
    ],
)
def test_the_driver_is_made_explicit(raw, expected):
    assert postgres_sqlalchemy_url(raw) == expected


@pytest.mark.parametrize(
    "raw, message",
    [
        ("postgresql+psycopg://u@h/d", "IOT_DAGSTER_POSTGRES_URL uses postgresql+psycopg://; expected postgresql:// or postgresql+psycopg2://"),
        ("mysql://u@h/d", "IOT_DAGSTER_POSTGRES_URL uses mysql://; expected"),
        ("not a url", "IOT_DAGSTER_POSTGRES_URL is not a database URL; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
        ("postgresql://u@h:5432", "IOT_DAGSTER_POSTGRES_URL names no database"),
    ],
)
def test_a_bad_url_is_one_line(raw, message):
    with pytest.raises(CliError) as err:
        postgres_sqlalchemy_url(raw)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_an_unreachable_server_is_one_line_naming_it(home, tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IOT_DAGSTER_POSTGRES_URL", f"postgresql://iot:pa55word@127.0.0.1:{port}/dagster")
    assert main(["materialize", "--select", "readings", "--partition", "2024-01-03"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Error: PostgreSQL at 127.0.0.1:{port}/dagster (IOT_DAGSTER_POSTGRES_URL) is unreachable: ")
    assert err.count("\n") == 1 and "pa55word" not in err, err
