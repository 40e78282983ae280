"""The DuckDB warehouse: SQL models built over the Parquet lake, their data tests, and
safe ad hoc queries.

Parquet stays the system of record. The warehouse is one DuckDB file,
``$IOT_DATA_DIR/warehouse/warehouse.duckdb``, holding a view per lake table
(``readings``, ``anomalies``, ...) and every model of the SQL project, as a view
or a table. Nothing is partitioned: views read the lake at query time (a filter
on ``date`` reads only those partitions), and tables are rebuilt whole, so they
are kept to what is cheap to rebuild from the whole history (anomalies, and the
cheap columns of ``window_stats``), never raw readings.

Concurrency (DuckDB lets one process hold a file read-write, and then no other
process can open it at all):

* :func:`refresh` never opens the live file read-write. Under an exclusive
  ``flock`` it builds the next version in a temp file beside it (from scratch,
  or from a copy when only some models are refreshed), closes it and renames it
  over the live file. Readers keep the version they opened; a failed refresh
  leaves the live file untouched; two refreshes queue on the lock.
* :func:`run_tests` opens the live file read-only, like any other reader
  (the Dagster UI, a notebook, ``duckdb -readonly``), any number at once.
* :class:`QuerySession` (``iot-platform sql``) does not depend on the file
  being there: it builds a small catalog of views in a private temp directory,
  reopens it read-only, attaches the warehouse read-only for the table models
  (a table model not built yet is computed from the lake instead), and then
  sandboxes the connection: only files under the data root are readable,
  nothing can be written, configuration is locked, extensions cannot load.

Every connection runs in UTC (``SET TimeZone = 'UTC'``); the models compute hours
and days with epoch arithmetic and do not depend on it, but an ad hoc
``date_trunc('hour', ts)`` or ``ts::DATE`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from iot_platform.core.alarm_schemas import ALARM_TABLES
from iot_platform.core.sensors_table import SENSORS
from iot_platform.core.sqlmodels import DataTest, Model, Project, ProjectError, Relation, quote_ident
from iot_platform.io.fsutil import exclusive_lock, fsync_path
from iot_platform.io.lake import TABLES, Lake, open_lake, write_parquet_atomic
from iot_platform.io.lake_store import store_dataset
from iot_platform.io.query_limits import LimitExceeded, QueryLimits, format_size, run_limited, session_temp_dir
from iot_platform.io.sensors import SENSORS_FILE


WAREHOUSE_DIR = "warehouse"
WAREHOUSE_FILE = "warehouse.duckdb"
LAKE_SCHEMA_DIR = "lake_schemas"  # beside the warehouse file: its lake views read these first
_ATTACHED = "warehouse"  # the alias a query session attaches the warehouse under

# Every table the lake writes (its schema is what a lake view looks like before the first file).
LAKE_SCHEMAS: dict[str, pa.Schema] = {**TABLES, **ALARM_TABLES}  # + the alert store's exported history

# Tables kept as one file under the data root, replaced whole (no date partitions): a view each, like a
# lake table's (listed by lake_tables, selected by lake_select).
SNAPSHOT_TABLES: dict[str, tuple[pa.Schema, Path]] = {"sensors": (SENSORS, SENSORS_FILE)}

_BASE_CONFIG = {
    # Never fetch or load an extension behind the user's back (httpfs for an http:// path, ...).
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
}


class WarehouseError(RuntimeError):
    """The warehouse cannot do what was asked (a model fails to build, no warehouse yet, ...)."""


class QueryError(ValueError):
    """An ad hoc query was refused or failed; the message is one line."""


class QueryStopped(QueryError):
    """A limit (timeout, memory) stopped the query. ``abandoned``: it did not stop in time,
    and its connection is still busy (the process should exit)."""

    def __init__(self, message: str, abandoned: bool = False):
        super().__init__(message)
        self.abandoned = abandoned


def default_project_dir() -> Path:
    """``dbt_like_sql/`` of the source tree this package runs from."""
    return Path(__file__).resolve().parents[2] / "dbt_like_sql"


def warehouse_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / WAREHOUSE_DIR / WAREHOUSE_FILE


def relation_name(relation: Relation) -> str:
    """How a model refers to a relation: every lake table and model is a name in ``main``."""
    return quote_ident(relation.name)


# -- SQL text helpers ---------------------------------------------------------------------
def _sql_string(value: str) -> str:
    # Only for DDL (CREATE VIEW, ATTACH), which takes no bound parameters: a view
    # stores its SQL text, so the lake path has to be written into it.
    return "'" + value.replace("'", "''") + "'"


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    simple = {pa.float64(): "DOUBLE", pa.float32(): "FLOAT", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
              pa.bool_(): "BOOLEAN", pa.date32(): "DATE"}
    if t in simple:
        return simple[t]
    raise TypeError(f"Arrow type {t} has no DuckDB equivalent here; expected one of {', '.join(map(str, simple))}, string, timestamp")


# Each lake view reads an empty file with the table's schema first: DuckDB takes a
# view's columns from the first file it lists, so without it one damaged file
# that happens to sort first (a junk `aaa.parquet`, a truncated part) would break
# every query, even `SELECT 1`. Its partition value is a day no data has.
SCHEMA_FILE = "schema.parquet"
_SCHEMA_PARTITION = "date=1970-01-01"


def write_lake_schemas(directory: Path, tables: Iterable[str]) -> None:
    """Write the empty schema file of each lake table under ``directory`` (see :func:`lake_select`)."""
    for table in tables:
        if table in LAKE_SCHEMAS:
            write_parquet_atomic(LAKE_SCHEMAS[table].empty_table(), schema_file(directory, table))


def schema_file(directory: Path, table: str) -> Path:
    return Path(directory) / table / _SCHEMA_PARTITION / SCHEMA_FILE


def lake_select(data_dir: str | os.PathLike[str], table: str, schema_dir: Path | None = None) -> str:
    """A SELECT over all partitions of a lake table, with its hive partition column ``date``.

    With ``schema_dir`` (where :func:`write_lake_schemas` wrote the table's empty
    schema file), the view's columns come from that file and no lake file is
    opened until a query reads it: a damaged file fails only the queries that
    read its day. With no file yet, an empty SELECT with the table's columns and
    types, so that models and queries over a young lake still bind.
    """
    if table in SNAPSHOT_TABLES:
        return snapshot_select(data_dir, table)
    if table not in LAKE_SCHEMAS:
        raise ProjectError(f"lake table {table!r} is unknown; expected one of {', '.join(LAKE_SCHEMAS)}")
    # the files of the table's current Delta snapshot, never a glob (superseded or staged files
    # may sit beside them); the view is fixed when it is created, a snapshot of its own
    files = [_sql_string(str(f)) for f in open_lake(Path(data_dir).resolve()).all_files(table)]
    if files:
        if schema_dir is not None:
            files.insert(0, _sql_string(str(schema_file(schema_dir, table))))
        return f"SELECT * FROM read_parquet([{', '.join(files)}], hive_partitioning = true, hive_types = {{'date': 'DATE'}})"
    cols = [f"CAST(NULL AS {_duck_type(f.type)}) AS {quote_ident(f.name)}" for f in LAKE_SCHEMAS[table]]
    return f"SELECT {', '.join(cols)}, CAST(NULL AS DATE) AS \"date\" WHERE false"


def snapshot_select(data_dir: str | os.PathLike[str], table: str) -> str:
    """A SELECT over a snapshot table's file; before it is first written, an empty SELECT with its columns."""
    schema, rel = SNAPSHOT_TABLES[table]
    path = Path(data_dir).resolve() / rel
    if path.exists():
        return f"SELECT * FROM read_parquet({_sql_string(str(path))})"
    cols = [f"CAST(NULL AS {_duck_type(f.type)}) AS {quote_ident(f.name)}" for f in schema]
    return f"SELECT {', '.join(cols)} WHERE false"


_QUOTED_PARQUET = re.compile(r"""['"]([^'"]+\.parquet)['"]""")
_MISSING_COLUMN = re.compile(r'column "([^"]+)" was read from the original file .*? but could not be found in file', re.S)


def damaged_file_message(message: str, data_dir: Path) -> str | None:
    """The one-line message for a DuckDB error caused by a damaged lake file, or None.

    ``message`` is DuckDB's own (``No magic bytes found at end of file '...'``,
    ``schema mismatch in glob: ...``); the result names the file relative to the
    data root and says how to repair it.
    """
    lake_dir = (Path(data_dir) / "lake").resolve()
    paths = [Path(p) for p in _QUOTED_PARQUET.findall(message)]
    damaged = [p for p in paths if p.name != SCHEMA_FILE and p.resolve().is_relative_to(lake_dir)]
    if not damaged:
        return None
    path = damaged[-1]  # in a schema mismatch, the file read last is the odd one
    table = path.resolve().relative_to(lake_dir).parts[0]
    missing = _MISSING_COLUMN.search(message)
    if missing:
        reason = f"column {missing.group(1)!r} is missing"
    else:
        text = message.split(": ", 1)[1] if message.startswith("Invalid Input Error: ") else message
        reason = _QUOTED_PARQUET.sub("", text.splitlines()[0]).replace("  ", " ").strip(" .:")
    rel = path.resolve().relative_to(Path(data_dir).resolve())
    return (
        f"{rel} is not a valid Parquet file of table {table} ({reason}); run 'iot-platform doctor' to list "
        "damaged files and 'iot-platform doctor --repair' to quarantine them and rebuild their days"
    )


def describe_error(exc: BaseException, sql: str | None = None, offset: int = 0) -> tuple[str, int | None, int | None]:
    """``(one-line message, line, column)`` of a DuckDB error (connections run with errors_as_json).

    ``offset`` is subtracted from DuckDB's character position, for SQL that was
    prefixed before running (``CREATE VIEW x AS``).
    """
    text = str(exc)
    kind, _, rest = text.partition(": ")
    message, position = text, None
    with contextlib.suppress(ValueError, TypeError):
        info = json.loads(rest[rest.index("{") :])
        message = f"{info.get('exception_type', kind.replace(' Error', ''))} Error: {info['exception_message']}"
        if "position" in info:
            position = int(info["position"]) - offset
    message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    line = col = None
    if position is not None and sql is not None and 0 <= position <= len(sql):
        line = sql.count("\n", 0, position) + 1
        col = position - (sql.rfind("\n", 0, position) + 1) + 1
    return message, line, col


def _connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path), read_only=read_only, config=dict(_BASE_CONFIG))
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET errors_as_json = true")
    return conn


def _object_type(conn: duckdb.DuckDBPyConnection, name: str, database: str | None = None) -> str | None:
    db = "current_database()" if database is None else "?"
    params = [name] if database is None else [name, database]
    row = conn.execute(
        "SELECT CASE WHEN table_type = 'VIEW' THEN 'view' ELSE 'table' END FROM information_schema.tables "
        f"WHERE table_schema = 'main' AND table_name = ? AND table_catalog = {db}",
        params,
    ).fetchall()
    return row[0][0] if row else None


def _columns(conn: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' "
            "AND table_name = ? AND table_catalog = current_database() ORDER BY ordinal_position",
            [name],
        ).fetchall()
    ]


def lake_tables(project: Project) -> list[str]:
    """Every lake table, declared in schema.yml or not: a table added to the lake is
    queryable by name at once (schema.yml's `sources` are its documentation)."""
    return sorted(set(LAKE_SCHEMAS) | set(SNAPSHOT_TABLES) | {t.name for t in project.source_tables()})


def _install_lake_views(
    conn: duckdb.DuckDBPyConnection, project: Project, data_dir: Path, schema_dir: Path, remote: Lake | None = None
) -> list[str]:
    """A view per lake table; their empty schema files are written under ``schema_dir``.

    With ``remote`` (the lake on an object store), a lake table's view reads the
    Arrow dataset :func:`register_remote_lake` registers on the connection: the
    view binds to it at query time, so a catalog built here is reused by a
    connection that registers the datasets anew.
    """
    names = []
    write_lake_schemas(schema_dir, lake_tables(project))
    if remote is not None:
        register_remote_lake(conn, remote)
    for table in lake_tables(project):
        if remote is not None and table in LAKE_SCHEMAS:
            select = f"SELECT * FROM {quote_ident(_remote_name(table))}"
        else:
            select = lake_select(data_dir, table, schema_dir)
        conn.execute(f"CREATE OR REPLACE VIEW {quote_ident(table)} AS {select}")
        names.append(table)
    return names


def _remote_name(table: str) -> str:
    return f"__lake_{table}"


def register_remote_lake(conn: duckdb.DuckDBPyConnection, remote: Lake) -> None:
    """Register each lake table's current snapshot (a pyarrow dataset over the object store).

    DuckDB reads these as Arrow scans through pyarrow's own S3 filesystem (the data
    path's reads, :func:`iot_platform.io.lake_store.store_dataset`): DuckDB itself
    opens no file and no URL, so its external access stays off, and a dataset holds
    only the files of its table's snapshot under the configured bucket/prefix.
    Registering works on a locked, sandboxed connection too.
    """
    for table in LAKE_SCHEMAS:  # the Delta tables and the alert store's exported history (plain files)
        schema = LAKE_SCHEMAS[table].append(pa.field("date", pa.date32()))
        conn.register(_remote_name(table), store_dataset(remote.all_files(table), schema, partition="date"))


def remote_lake(data_dir: str | os.PathLike[str], remote: Lake | None = None) -> Lake | None:
    """The lake on an object store: ``remote``, else the data root's when ``IOT_LAKE_URL`` names a
    store (None: the local lake, whose views read its files by path)."""
    if remote is not None:
        return remote
    lake = open_lake(Path(data_dir).resolve())
    return lake if lake.store is not None else None


def latest_date(project: Project, data_dir: Path, remote: Lake | None = None) -> dt.date | None:
    """The newest day partition of the project's lake tables (from directory names, or the
    Delta logs of a remote lake: no data file is read)."""
    lake = open_lake(data_dir)
    days = [d for t in lake_tables(project) for d in (remote.days(t) if remote and t in LAKE_SCHEMAS else lake.days(t))[-1:]]
    return max(days, default=None)


def _set_latest_date(conn: duckdb.DuckDBPyConnection, project: Project, data_dir: Path, remote: Lake | None = None) -> None:
    # A variable, not a subquery: `date >= getvariable('latest_date') - 1` is a constant when
    # the query is planned, so it prunes partitions even through a view's GROUP BY.
    conn.execute("SET VARIABLE latest_date = ?::DATE", [latest_date(project, data_dir, remote)])


def _check_single_select(conn: duckdb.DuckDBPyConnection, sql: str, model: Model) -> None:
    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error as exc:
        message, line, _ = describe_error(exc, sql)
        raise ProjectError(f"{model.path}:{line or 1}: {message}") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        raise ProjectError(f"{model.path}: a model holds exactly one SELECT; found {', '.join(kinds) or 'nothing'}")


# -- building models -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuiltModel:
    """What one refresh did to one model."""

    name: str
    materialized: str
    columns: list[tuple[str, str]]  # (name, DuckDB type)
    row_count: int | None  # tables only: counting a view's rows would scan the lake
    preview: pa.Table | None  # the first rows, tables only
    sql: str  # as rendered


def _build_model(conn: duckdb.DuckDBPyConnection, model: Model, preview_rows: int, data_dir: Path) -> BuiltModel:
    sql = model.render(relation_name)
    _check_single_select(conn, sql, model)
    name = quote_ident(model.name)
    existing = _object_type(conn, model.name)
    if existing is not None and existing != model.materialized:
        conn.execute(f"DROP {existing.upper()} {name}")
    prefix = f"CREATE OR REPLACE {model.materialized.upper()} {name} AS\n"
    try:
        conn.execute(prefix + sql)
    except duckdb.Error as exc:
        message, line, _ = describe_error(exc, sql, offset=len(prefix))
        message = damaged_file_message(message, data_dir) or message
        missing = [r for r in model.refs if _object_type(conn, r) is None]
        hint = f" (model {missing[0]} is not in the warehouse yet: refresh it too)" if missing else ""
        raise WarehouseError(f"{model.path}:{line or 1}: model {model.name} failed to build: {message}{hint}") from None
    columns = _columns(conn, model.name)
    actual = {c for c, _ in columns}
    undocumented = [c.name for c in model.columns if c.name not in actual]
    if undocumented:
        raise WarehouseError(
            f"{model.path}: schema.yml documents column {undocumented[0]!r} of {model.name}, which the model "
            f"does not return; it returns {', '.join(c for c, _ in columns)}"
        )
    row_count = preview = None
    if model.materialized == "table":
        row_count = conn.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
        preview = conn.sql(f"SELECT * FROM {name} LIMIT {int(preview_rows)}").to_arrow_table()
    return BuiltModel(model.name, model.materialized, columns, row_count, preview, sql)


def refresh(
    project: Project,
    data_dir: str | os.PathLike[str],
    select: Iterable[str] | None = None,
    *,
    preview_rows: int = 5,
    remote: Lake | None = None,
) -> list[BuiltModel]:
    """Build the models ``select`` (all when None) into the warehouse, atomically.

    A full refresh builds a new file from scratch; a partial one starts from a
    copy of the current file, so the models not selected keep their last build.
    Either way the new file replaces the old one with one rename, or not at all.
    """
    data_dir = Path(data_dir).resolve()
    remote = remote_lake(data_dir, remote)
    models = project.select(select)
    full = {m.name for m in models} == set(project.models)
    path = warehouse_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.with_name(f".{path.name}.lock")):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            if not full and path.exists():
                shutil.copyfile(path, tmp)
            conn = _connect(tmp)
            try:
                lake_views = _install_lake_views(conn, project, data_dir, path.parent / LAKE_SCHEMA_DIR, remote)
                built = [_build_model(conn, m, preview_rows, data_dir) for m in models]
                keep = set(lake_views) | set(project.models)
                for obj, kind in conn.execute(
                    "SELECT table_name, table_type FROM information_schema.tables "
                    "WHERE table_schema = 'main' AND table_catalog = current_database()"
                ).fetchall():
                    if obj not in keep:  # a model deleted from the project
                        conn.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {quote_ident(obj)}")
                conn.execute("CHECKPOINT")
            finally:
                conn.close()
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
    return built


# -- data tests ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TestOutcome:
    """The result of one data test: how many rows break it and a few of them."""

    __test__ = False  # not a pytest class

    test: DataTest
    failing_rows: int
    examples: pa.Table | None
    sql: str
    error: str | None = None  # the audit query itself failed (a missing model or column)

    @property
    def passed(self) -> bool:
        return self.error is None and self.failing_rows == 0


def run_tests(
    project: Project,
    data_dir: str | os.PathLike[str],
    tests: Iterable[DataTest] | None = None,
    *,
    examples: int = 5,
    remote: Lake | None = None,
) -> list[TestOutcome]:
    """Run data tests (all when None) against the warehouse, opened read-only."""
    path = warehouse_path(Path(data_dir).resolve())
    if not path.exists():
        raise WarehouseError(f"{path} does not exist yet; materialize the models first")
    remote = remote_lake(data_dir, remote)
    outcomes = []
    conn = _connect(path, read_only=True)
    try:
        if remote is not None:  # the warehouse's lake views read these datasets by name
            register_remote_lake(conn, remote)
        _set_latest_date(conn, project, Path(data_dir).resolve(), remote)
        for test in project.tests if tests is None else tests:
            sql, params = test.sql(relation_name)
            try:
                n = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0]
                rows = conn.sql(f"SELECT * FROM ({sql}) LIMIT ?", params=[*params, examples]).to_arrow_table() if n else None
            except duckdb.Error as exc:
                message = describe_error(exc)[0]
                outcomes.append(TestOutcome(test, 0, None, sql, damaged_file_message(message, Path(data_dir)) or message))
                continue
            outcomes.append(TestOutcome(test, int(n), rows, sql))
    finally:
        conn.close()
    return outcomes


# -- ad hoc queries -----------------------------------------------------------------------------
_LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.S)
_EXPLAIN = re.compile(r"^explain\s*(\([^)]*\)\s*)?(analyze\b\s*)?(?P<rest>.*)$", re.S | re.I)
_REFUSALS = {
    "COPY": "COPY is refused: the session writes nothing; use --output FILE to save a result",
    "EXPORT": "EXPORT DATABASE is refused: the session writes nothing",
    "ATTACH": "ATTACH is refused: the session reads only the lake and the warehouse",
    "DETACH": "DETACH is refused: the session's databases are fixed",
    "LOAD": "INSTALL and LOAD are refused: the session cannot load extensions",
    "SET": "SET, RESET and USE are refused: the session's settings are locked",
    "PRAGMA": "PRAGMA and IMPORT DATABASE are refused; use SELECT (e.g. DESCRIBE anomalies, SHOW TABLES)",
    "CALL": "CALL is refused; use SELECT * FROM the_function(...)",
    "MULTI": "PIVOT as a statement is refused; write SELECT * FROM (PIVOT ...)",
}


def _refusal(kind: str | None) -> str:
    if kind in _REFUSALS:
        return _REFUSALS[kind]
    what = f"{kind.replace('_', ' ')} statements are" if kind else "this statement is"
    return f"{what} refused: the session is read-only; only SELECT and EXPLAIN run"


class QuerySession:
    """A read-only, sandboxed DuckDB connection with every lake table and model by name.

    Use as a context manager; :meth:`query` runs one SELECT (or EXPLAIN) and
    returns an Arrow table.
    """

    def __init__(
        self,
        project: Project,
        data_dir: str | os.PathLike[str],
        limits: QueryLimits | None = None,
        remote: Lake | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        if not self.data_dir.is_dir():
            raise WarehouseError(f"data directory {self.data_dir} does not exist")
        # the lake on an object store (IOT_LAKE_URL=s3://...), else None: the local lake
        self.remote = remote_lake(self.data_dir, remote)
        self.project = project
        self.limits = limits if limits is not None else QueryLimits()
        self.abandoned = False  # a query that did not stop still holds the connection
        self._tmp = session_temp_dir()
        try:
            catalog = Path(self._tmp.name) / "session.duckdb"
            self._schema_dir = Path(self._tmp.name) / "schemas"
            self._warehouse = warehouse_path(self.data_dir)
            self._versions = self._lake_versions()
            self.snapshot_models = self._build_catalog(catalog)
            self.conn = self._open(catalog)
        except BaseException:
            self._tmp.cleanup()
            raise
        self.relations = lake_tables(project) + list(project.models)

    def _lake_versions(self) -> tuple[int | None, ...]:
        """The version of each lake table: the views read a snapshot's files, so a new version (a
        micro-batch, a replace that deleted the files a view named) means new views."""
        lake = self.remote if self.remote is not None else open_lake(self.data_dir)
        return tuple(lake.version(t) for t in sorted(TABLES))

    def _refresh_views(self) -> None:
        versions = self._lake_versions()
        if versions == self._versions or self.abandoned:
            return
        if self.remote is not None:  # the views read the registered datasets by name: new snapshots
            register_remote_lake(self.conn, self.remote)
        else:
            # temporary views shadow the catalog's (the models' views bind to them by name); the
            # session keeps its snapshot of the warehouse's table models, as a reader should
            for table in lake_tables(self.project):
                select = lake_select(self.data_dir, table, self._schema_dir)
                self.conn.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(table)} AS {select}")
        self._versions = versions

    def _attach(self, conn: duckdb.DuckDBPyConnection) -> bool:
        if not self._warehouse.exists():
            return False
        conn.execute(f"ATTACH {_sql_string(str(self._warehouse))} AS {_ATTACHED} (READ_ONLY)")
        return True

    def _build_catalog(self, catalog: Path) -> list[str]:
        conn = _connect(catalog)
        try:
            attached = self._attach(conn)
            _install_lake_views(conn, self.project, self.data_dir, self._schema_dir, self.remote)
            from_snapshot = []
            for model in self.project.models.values():
                name = quote_ident(model.name)
                if model.materialized == "table" and attached and _object_type(conn, model.name, _ATTACHED) == "table":
                    conn.execute(f"CREATE VIEW {name} AS SELECT * FROM {_ATTACHED}.main.{name}")
                    from_snapshot.append(model.name)
                else:  # a view model, or a table model not built yet: computed from the lake
                    conn.execute(f"CREATE VIEW {name} AS\n{model.render(relation_name)}")
            conn.execute("CHECKPOINT")
        finally:
            conn.close()
        return from_snapshot

    def _open(self, catalog: Path) -> duckdb.DuckDBPyConnection:
        conn = _connect(catalog, read_only=True)
        try:
            self._attach(conn)
            if self.remote is not None:
                register_remote_lake(conn, self.remote)
            _set_latest_date(conn, self.project, self.data_dir, self.remote)
            spill = Path(self._tmp.name) / "spill"
            conn.execute("SET temp_directory = ?", [str(spill)])
            conn.execute("SET memory_limit = ?", [f"{self.limits.memory}B"])
            conn.execute("SET max_temp_directory_size = ?", [f"{self.limits.temp_size(Path(self._tmp.name))}B"])
            # the data root, and the lake views' empty schema files
            conn.execute("SET allowed_directories = ?", [[str(self.data_dir) + os.sep, str(self._schema_dir) + os.sep]])
            conn.execute("SET enable_external_access = false")
            conn.execute("SET lock_configuration = true")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        try:
            if not self.abandoned:
                self.conn.close()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> QuerySession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check(self, sql: str) -> None:
        """Refuse anything but one SELECT or EXPLAIN SELECT, with a one-line reason."""
        statements = self._statements(sql)
        if not statements:
            raise QueryError("no SQL statement given")
        if len(statements) > 1:
            raise QueryError(f"expected one SQL statement, got {len(statements)}; run them one at a time")
        kind, text = statements[0]
        if kind == "EXPLAIN":
            m = _EXPLAIN.match(_LEADING_COMMENTS.sub("", text, count=1))
            inner = self._statements(m.group("rest")) if m else []
            if [k for k, _ in inner] != ["SELECT"]:
                raise QueryError("EXPLAIN is allowed only on a SELECT")
        elif kind != "SELECT":
            raise QueryError(_refusal(kind))

    def _statements(self, sql: str) -> list[tuple[str, str]]:
        try:
            return [(s.type.name, s.query) for s in self.conn.extract_statements(sql)]
        except duckdb.Error as exc:
            raise QueryError(self._message(exc, sql)) from None
        except ValueError:  # a statement type the Python client has no name for
            raise QueryError(_refusal(None)) from None

    def _message(self, exc: BaseException, sql: str) -> str:
        message, line, col = describe_error(exc, sql)
        if line is not None:
            message += f" (line {line}, column {col})"
        if isinstance(exc, duckdb.PermissionException):
            message += f"; queries may read files under {self.data_dir} only"
        return damaged_file_message(message, self.data_dir) or message

    def _abandon(self) -> None:
        self.abandoned = True

    def _run(self, sql: str) -> pa.Table:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
            return self.conn.execute(sql).to_arrow_table()

    def query(self, sql: str) -> pa.Table:
        self._refresh_views()
        self.check(sql)
        try:
            # execute(), not sql(): only execute() reports errors with their position
            # (errors_as_json), which the one-line message points at. The extra copy it
            # warns about is of the result, which is what we return anyway.
            return run_limited(self.conn, lambda: self._run(sql), self.limits, on_abandon=self._abandon)
        except LimitExceeded as exc:
            raise QueryStopped(str(exc), exc.abandoned) from None
        except duckdb.InterruptException:  # the user's interrupt reaches the caller as KeyboardInterrupt
            raise QueryStopped("query interrupted") from None
        except duckdb.OutOfMemoryException as exc:
            what = describe_error(exc)[0].split("; Possible solutions", 1)[0]
            raise QueryStopped(
                f"query stopped: it needs more than the --memory-limit of {format_size(self.limits.memory)} "
                f"({what}); aggregate more, select fewer rows, or raise --memory-limit"
            ) from None
        except duckdb.Error as exc:
            raise QueryError(self._message(exc, sql)) from None
