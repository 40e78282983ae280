"""``iot-platform sql``: read-only ad hoc SQL over the lake tables and the warehouse models.

    iot-platform sql "SELECT severity, count(*) FROM anomalies WHERE date = DATE '2024-03-01' GROUP BY ALL"
    iot-platform sql -f query.sql --format csv --output result.csv
    echo "SELECT * FROM open_alerts" | iot-platform sql --format json
    iot-platform sql                      # an interactive prompt

The session is sandboxed (see ``iot_platform.io.warehouse.QuerySession``): it
reads files under the data root only and writes nothing; with
``IOT_LAKE_URL=s3://bucket/prefix`` the lake tables are the Delta tables under
that prefix, handed to DuckDB as Arrow datasets (DuckDB itself still opens no
URL and no file outside the data root); ``--output`` is
written here, from the Arrow result, not by the SQL connection. Every query
runs under a timeout and a memory limit and stops on Ctrl-C
(``iot_platform.io.query_limits``); SIGTERM is handled like Ctrl-C, so the
session's temp directory is always removed.
"""

from __future__ import annotations

import argparse
import builtins
import csv
import datetime as dt
import decimal
import io
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from iot_platform.cli import CliError
from iot_platform.core.sqlmodels import ProjectError, load_project
from iot_platform.io.lake import write_parquet_atomic
from iot_platform.io.objstore import LakeUrlError, lake_store_from_env
from iot_platform.io.query_limits import DEFAULT_TIMEOUT_S, QueryLimits, default_memory_limit, format_size, parse_size
from iot_platform.io.warehouse import QueryError, QuerySession, WarehouseError, default_project_dir
from iot_platform.settings import DATA_DIR_ENV, data_dir

FORMATS = ("table", "csv", "json", "parquet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sql",
        help="run read-only SQL over the lake and the warehouse models",
        description=(
            "Run one read-only SQL query (SELECT or EXPLAIN) with every lake table (readings, window_stats, "
            "anomalies, fault_labels, raw_readings, rejected_readings) and every model of dbt_like_sql/ by name. "
            "A filter on the partition column `date` reads only those days. With no query and a terminal, "
            "start an interactive prompt."
        ),
    )
    p.add_argument("sql", nargs="?", help="the query; '-' reads it from stdin")
    p.add_argument("-f", "--file", type=Path, help="read the query from FILE")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: an aligned table)")
    p.add_argument("-o", "--output", type=Path, help="write the result to FILE instead of stdout")
    p.add_argument("--data-dir", type=Path, help=f"the data root (default: ${DATA_DIR_ENV}, else ./data)")
    p.add_argument("--project-dir", type=Path, help="the SQL project (default: dbt_like_sql/ of the source tree)")
    p.add_argument(
        "--max-rows", type=int, default=1000, metavar="N", help="rows printed in table format (default 1000; 0 = all)"
    )
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
        help=f"stop a query running longer than this (default {DEFAULT_TIMEOUT_S:g}; 0 = no limit)",
    )  # fmt: skip
    p.add_argument(
        "--memory-limit", metavar="SIZE",
        help=f"memory a query may use, e.g. 500MB or 2GiB; beyond it DuckDB spills to disk or the query stops "
        f"(default: a quarter of this machine's memory, at most 4 GiB: {format_size(default_memory_limit())} here)",
    )  # fmt: skip
    # also accepted after the subcommand (`iot-platform sql --debug ...`); SUPPRESS keeps
    # `iot-platform --debug sql` working: the subcommand's default does not overwrite it
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
    p.set_defaults(func=run)


class _Terminated(Exception):
    """SIGTERM, raised in the main thread like Ctrl-C, so that the query stops and the temp directory goes."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def _limits(args: argparse.Namespace) -> QueryLimits:
    if not args.timeout >= 0:
        raise CliError(f"--timeout {args.timeout:g} is invalid; expected a number of seconds > 0, or 0 for no limit")
    try:
        memory = parse_size(args.memory_limit) if args.memory_limit is not None else default_memory_limit()
        return QueryLimits(timeout_s=args.timeout or None, memory=memory)
    except ValueError as exc:
        raise CliError(f"--memory-limit: {exc}") from None


def run(args: argparse.Namespace) -> int:
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if on_main else None
    try:
        return _run(args)
    except _Terminated:
        print("Error: stopped by SIGTERM", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("Error: query cancelled (Ctrl-C)", file=sys.stderr)
        return 130
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    limits = _limits(args)
    if args.max_rows < 0:
        raise CliError(f"--max-rows {args.max_rows} is invalid; expected 0 (all rows) or more")
    if args.format == "parquet" and args.output is None:
        raise CliError("--format parquet writes a binary file; give --output FILE")
    sql = _read_sql(args)
    if sql is None and args.output is not None:
        raise CliError("--output needs a query (an argument, --file or stdin), not the interactive prompt")
    root = args.data_dir.resolve() if args.data_dir else data_dir()
    if not root.is_dir():
        raise CliError(f"data directory {root} does not exist; set {DATA_DIR_ENV} or pass --data-dir")
    project_dir = args.project_dir or default_project_dir()
    try:
        store = lake_store_from_env()
    except LakeUrlError as exc:
        raise CliError(str(exc)) from None
    try:
        project = load_project(project_dir)
        session = QuerySession(project, root, limits, remote=_remote_lake(root, store))
    except (ProjectError, WarehouseError) as exc:
        raise CliError(str(exc)) from None
    code = 0
    try:
        with session:
            if sql is None:
                code = repl(session)
                return code
            try:
                result = session.query(sql)
            except QueryError as exc:
                code = 2
                raise CliError(str(exc)) from None
            write_result(result, args.format, args.output, max_rows=args.max_rows)
            if args.output is not None:
                n = result.num_rows
                print(f"Wrote {n} row{'s' if n != 1 else ''} as {args.format} to {args.output}", file=sys.stderr)
    except (KeyboardInterrupt, _Terminated):
        code = 130
        raise
    finally:
        if session.abandoned:
            # The query did not stop within its grace period: its DuckDB connection is busy
            # in a worker thread and cannot be closed. The temp directory is gone (close()
            # ran); end the process now rather than hang on the busy connection at exit.
            print("Error: the query did not stop after its interrupt; exiting", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 2)
    return 0


def _remote_lake(root: Path, store):
    """The lake on the object store IOT_LAKE_URL names (None: the local lake under the data root)."""
    if store is None:
        return None
    from iot_platform.io.lake import Lake

    return Lake(root, store)


def _read_sql(args: argparse.Namespace) -> str | None:
    if args.sql is not None and args.file is not None:
        raise CliError("give the query as an argument or with --file, not both")
    if args.file is not None:
        try:
            return args.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    if args.sql == "-" or (args.sql is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    return args.sql


# -- output -------------------------------------------------------------------------------
def write_result(table: pa.Table, fmt: str, output: Path | None, *, max_rows: int = 0) -> None:
    """Write ``table`` as ``fmt`` to ``output`` (stdout when None)."""
    if fmt == "parquet":
        assert output is not None
        write_parquet_atomic(table, output)
        return
    if output is None:
        try:
            _write_text(table, fmt, sys.stdout, max_rows)
            sys.stdout.flush()
        except BrokenPipeError:  # `iot-platform sql ... | head`: the reader has all it wants
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        with open(output, "w", encoding="utf-8", newline="") as f:
            _write_text(table, fmt, f, max_rows)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None


def _write_text(table: pa.Table, fmt: str, out: IO[str], max_rows: int) -> None:
    if fmt == "csv":
        write_csv(table, out)
    elif fmt == "json":
        write_json(table, out)
    else:
        out.write(format_table(table, max_rows))


def _rows(table: pa.Table):
    for batch in table.to_batches(max_chunksize=10_000):
        yield from zip(*(col.to_pylist() for col in batch.columns))


def _interval(v: Any) -> str:
    seconds = v.nanoseconds / 1e9
    hh, rest = divmod(abs(seconds), 3600)
    mm, ss = divmod(rest, 60)
    clock = f"{'-' if seconds < 0 else ''}{int(hh):02d}:{int(mm):02d}:{ss:09.6f}".rstrip("0").rstrip(".")
    parts = [f"{v.months} months"] if v.months else []
    parts += [f"{v.days} days"] if v.days else []
    return " ".join([*parts, clock])


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if hasattr(v, "nanoseconds") and hasattr(v, "months"):
        return _interval(v)
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    return v


def _text(v: Any, null: str, float_format: Callable[[float], str]) -> str:
    if v is None:
        return null
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return float_format(v)
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (dt.date, dt.time, decimal.Decimal, int, str)):
        return str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(_jsonable(v))
    return str(_jsonable(v))


def write_csv(table: pa.Table, out: IO[str]) -> None:
    """RFC 4180 CSV with a header; NULL is an empty field, floats keep full precision."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.column_names)
    for row in _rows(table):
        w.writerow([_text(v, "", repr) for v in row])


def write_json(table: pa.Table, out: IO[str]) -> None:
    """A JSON array of row objects, one row per line; timestamps in ISO 8601, NaN as null."""
    names = table.column_names
    out.write("[")
    for i, row in enumerate(_rows(table)):
        out.write(",\n" if i else "\n")
        out.write(json.dumps({n: _jsonable(v) for n, v in zip(names, row)}, allow_nan=False))
    out.write("\n]\n" if table.num_rows else "]\n")


def _short_float(v: float) -> str:
    if v.is_integer() and abs(v) < 1e15:
        return f"{v:.1f}"  # 5.0, not 5: the column is a float
    return f"{v:.10g}"


def format_table(table: pa.Table, max_rows: int = 0) -> str:
    """An aligned text table: numbers right-aligned, NULL shown as NULL, and a row count."""
    if table.column_names == ["explain_key", "explain_value"]:  # EXPLAIN: the plan is the text
        return "".join(str(v) + "\n" for v in table.column("explain_value").to_pylist())
    shown = table if not max_rows or table.num_rows <= max_rows else table.slice(0, max_rows)
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in table.schema
    ]
    cells = [[_text(v, "NULL", _short_float) for v in row] for row in _rows(shown)]
    header = table.column_names
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]

    def line(values: list[str], align: bool = True) -> str:
        parts = [v.rjust(w) if align and num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip() + "\n"

    buf = io.StringIO()
    buf.write(line(header, align=False))
    buf.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        buf.write(line(r))
    n = table.num_rows
    footer = f"({n} row{'s' if n != 1 else ''}"
    if shown.num_rows < n:
        footer += f", first {shown.num_rows} shown; --max-rows 0 shows all, --format csv exports them"
    buf.write(footer + ")\n")
    return buf.getvalue()


# -- interactive prompt ----------------------------------------------------------------------
_COMMANDS = ".tables lists the tables and models; .quit leaves (or Ctrl-D)"


def repl(
    session: QuerySession,
    read: Callable[[str], str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    max_rows: int = 1000,
) -> int:
    """Read queries ending in ';' and print each result; an error is reported and the prompt goes on."""
    out = out or sys.stdout
    err = err or sys.stderr
    if read is None:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:  # pragma: no cover - not on every platform
            pass
        read = builtins.input
    out.write(f"iot-platform sql on {session.data_dir}: end a query with ';'. {_COMMANDS}\n")
    lines: list[str] = []
    while True:
        try:
            line = read("...> " if lines else "sql> ")
        except EOFError:
            out.write("\n")
            return 0
        except KeyboardInterrupt:
            lines = []
            out.write("\n")
            continue
        command = line.strip()
        if not lines and command in (".quit", ".exit", "\\q"):
            return 0
        if not lines and command == ".tables":
            out.write("\n".join(session.relations) + "\n")
            continue
        if not lines and command.startswith("."):
            err.write(f"Error: unknown command {command}; {_COMMANDS}\n")
            continue
        lines.append(line)
        text = "\n".join(lines)
        if not text.strip():
            lines = []
            continue
        if not text.rstrip().endswith(";"):
            continue
        lines = []
        try:
            out.write(format_table(session.query(text), max_rows))
        except QueryError as exc:
            err.write(f"Error: {exc}\n")
        except KeyboardInterrupt:  # Ctrl-C stops the query, not the prompt
            err.write("Error: query cancelled (Ctrl-C)\n")
        if session.abandoned:
            return 2
