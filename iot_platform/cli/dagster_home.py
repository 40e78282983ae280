"""The one Dagster instance of a data root, shared by ``ui``, ``backfill`` and ``materialize``.

Run history, sensor cursors and schedule state live in ``$DAGSTER_HOME``
(default ``$IOT_DATA_DIR/dagster_home``), never in a temporary directory, so
they survive a restart of the UI, and a run started from the command line
shows in the UI.

Storage is SQLite inside the Dagster home unless ``IOT_DAGSTER_POSTGRES_URL``
is set when the home is created: then runs, events and schedules go to that
PostgreSQL database (``dagster-postgres``, the ``[postgres]`` extra). The URL
stays in the environment: dagster.yaml names the variable, never the password.

Both kinds of home get the run queue's lanes: at most one micro-batch run in
progress, at most ``IOT_MAX_BACKFILL_RUNS`` (default 2) runs of backfills
launched from the UI, so a backfill never starves the live micro-batches.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from iot_platform.cli import CliError
from iot_platform.settings import (
    DAGSTER_POSTGRES_URL_ENV,
    DEFAULT_MAX_BACKFILL_RUNS,
    MAX_BACKFILL_RUNS_ENV,
    MICRO_BATCH_QUEUE,
    QUEUE_TAG,
    data_dir,
    positive_int_env,
)

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

RUN_QUEUE_YAML = """\
# The run queue (Dagster's QueuedRunCoordinator, run by the daemon): micro-batches and
# backfills have lanes of their own, so a backfill never holds up the live data.
concurrency:
  runs:
    max_concurrent_runs: {total}
    tag_concurrency_limits:
      # every run of micro_batch_job carries this tag: one at a time, in order
      - key: {queue_tag}
        value: {micro_batch}
        limit: 1
      # the runs of all backfills launched from the UI together ({env}, when this file was written)
      - key: dagster/backfill
        limit: {backfills}
"""

POSTGRES_YAML = """\
# Runs, event logs and schedules in PostgreSQL. The URL (with its password) is read from
# the environment variable each time, never written here.
storage:
  postgres:
    postgres_url:
      env: {env}
"""


def _quiet_alembic() -> None:
    # Dagster migrates its storage with alembic, which logs a dozen INFO lines on import and per open.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def max_backfill_runs() -> int:
    try:
        n = positive_int_env(MAX_BACKFILL_RUNS_ENV)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return DEFAULT_MAX_BACKFILL_RUNS if n is None else n


def instance_yaml(*, postgres: bool, backfills: int) -> str:
    """The dagster.yaml iot-platform writes into a new Dagster home."""
    queue = RUN_QUEUE_YAML.format(
        total=max(10, backfills + 4),  # Dagster's default 10, or room for the lanes and the other jobs
        queue_tag=QUEUE_TAG, micro_batch=MICRO_BATCH_QUEUE, env=MAX_BACKFILL_RUNS_ENV, backfills=backfills,
    )  # fmt: skip
    return DAGSTER_YAML + queue + (POSTGRES_YAML.format(env=DAGSTER_POSTGRES_URL_ENV) if postgres else "")


def postgres_sqlalchemy_url(raw: str) -> str:
    """``raw`` with its driver made explicit: ``postgresql+psycopg2://``.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which
    dagster-postgres does not install; it is built on psycopg2.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except ArgumentError:
        raise CliError(
            f"{DAGSTER_POSTGRES_URL_ENV} is not a database URL; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg2")
    elif url.drivername != "postgresql+psycopg2":
        raise CliError(
            f"{DAGSTER_POSTGRES_URL_ENV} uses {url.drivername}://; expected postgresql:// or postgresql+psycopg2:// "
            "(dagster-postgres talks to PostgreSQL through psycopg2)"
        )
    if not url.database:
        raise CliError(f"{DAGSTER_POSTGRES_URL_ENV} names no database; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    return url.render_as_string(hide_password=False)


def _check_home_matches_environment(config: Path, postgres: bool) -> None:
    """An existing dagster.yaml is the user's and is never rewritten; say so when it disagrees with the environment."""
    try:
        current = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"{config} is not valid YAML ({str(exc).splitlines()[0]}); fix it or delete it to have it rewritten") from None
    if not isinstance(current, dict):
        raise CliError(f"{config} is not a YAML mapping; fix it or delete it to have it rewritten")
    storage = current.get("storage")
    has_postgres = isinstance(storage, dict) and "postgres" in storage
    if postgres and not has_postgres:
        raise CliError(
            f"{DAGSTER_POSTGRES_URL_ENV} is set but {config} keeps the runs in this directory (SQLite); "
            "use a new DAGSTER_HOME for PostgreSQL, or delete that file to have it rewritten"
        )
    if has_postgres and not postgres and DAGSTER_POSTGRES_URL_ENV in config.read_text():
        raise CliError(f"{config} keeps the runs in PostgreSQL at ${DAGSTER_POSTGRES_URL_ENV}, which is not set; set it")
    if os.environ.get(MAX_BACKFILL_RUNS_ENV):
        wanted = max_backfill_runs()
        limits = ((current.get("concurrency") or {}).get("runs") or {}).get("tag_concurrency_limits") or []
        found = [lim.get("limit") for lim in limits if isinstance(lim, dict) and lim.get("key") == "dagster/backfill" and "value" not in lim]
        if found != [wanted]:
            had = f"limits backfill runs to {found[0]}" if found else "sets no limit on backfill runs"
            raise CliError(
                f"{MAX_BACKFILL_RUNS_ENV}={wanted} but {config} {had}; edit its dagster/backfill limit, "
                "or delete the file to have it rewritten"
            )


def dagster_home() -> Path:
    """``$DAGSTER_HOME`` or ``<data root>/dagster_home``, created with our dagster.yaml if new."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    postgres = bool(os.environ.get(DAGSTER_POSTGRES_URL_ENV))
    if not config.exists():
        config.write_text(instance_yaml(postgres=postgres, backfills=max_backfill_runs()))
    else:
        _check_home_matches_environment(config, postgres)
    return home


def use_dagster_home() -> Path:
    """Point this process (and the processes it starts) at the data root's Dagster home."""
    raw = os.environ.get(DAGSTER_POSTGRES_URL_ENV)
    if raw:
        _quiet_alembic()
        try:
            import dagster_postgres  # noqa: F401
        except ImportError:
            raise CliError(
                f"{DAGSTER_POSTGRES_URL_ENV} is set but dagster-postgres is not installed; "
                "run: pip install 'iot_platform[postgres]'"
            ) from None
        url = postgres_sqlalchemy_url(raw)
        # else dagster-postgres retries for seconds, then shows a traceback
        check_postgres_reachable(url)
        # the webserver, the daemon and the run workers inherit the driver-explicit URL
        os.environ[DAGSTER_POSTGRES_URL_ENV] = url
    home = dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("IOT_DATA_DIR", str(data_dir()))
    return home


def check_postgres_reachable(url: str, timeout_s: int = 5) -> None:
    """A one-line CliError when the PostgreSQL server of ``url`` does not answer or refuses us."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout_s}, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        if parsed.password:
            reason = reason.replace(str(parsed.password), "***")
        raise CliError(
            f"PostgreSQL at {parsed.host}:{parsed.port or 5432}/{parsed.database} ({DAGSTER_POSTGRES_URL_ENV}) "
            f"is unreachable: {reason}"
        ) from None
    finally:
        engine.dispose()


def open_instance(home: Path):
    """The persistent ``DagsterInstance`` of ``home`` (use it as a context manager)."""
    import dagster as dg

    _quiet_alembic()
    return dg.DagsterInstance.from_config(str(home))
