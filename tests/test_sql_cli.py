"""`iot-platform sql`: output formats, where the SQL comes from, and everything it refuses."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iot_platform.cli import main
from iot_platform.cli.sql import repl
from iot_platform.core.schemas import ANOMALIES
from iot_platform.core.sqlmodels import load_project
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import QuerySession, default_project_dir, refresh

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
UTC = dt.timezone.utc
QUERY = "SELECT sensor_id, count(*) AS n, max(score) AS top, min(start_ts) AS first FROM anomalies WHERE date = DATE '2024-03-01' GROUP BY ALL ORDER BY 1"


def anomaly(aid, sensor, severity, hour, score, message="spike"):
    start = dt.datetime(2024, 3, 1, hour, tzinfo=UTC)
    return dict(anomaly_id=aid, sensor_id=sensor, anomaly_type="spike", severity=severity, metric="temperature",
                start_ts=start, end_ts=start + dt.timedelta(seconds=1), value=None, threshold=1.0, score=score,
                n_points=1, systemic_id=None, message=message)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A data root with four anomalies on D1, one on D2, and a built warehouse."""
    root = tmp_path_factory.mktemp("template")
    lake = Lake(root)
    lake.replace_partition("anomalies", D1, pa.Table.from_pylist([
        anomaly("a1", "s1", "critical", 1, 5.0, 'says "hi", twice'),
        anomaly("a2", "s2", "critical", 2, 3.0),
        anomaly("a3", "s2", "warning", 3, 4.5),
        anomaly("a4", "s2", "critical", 4, 2.0),
    ], schema=ANOMALIES))
    lake.replace_partition("anomalies", D2, pa.Table.from_pylist([anomaly("a5", "s1", "critical", 5, 9.0)], schema=ANOMALIES))
    refresh(load_project(default_project_dir()), root)
    return root


@pytest.fixture
def root(template: Path, data_dir: Path) -> Path:
    """A fresh copy of the template in the test's data root (also $IOT_DATA_DIR)."""
    shutil.copytree(template, data_dir, dirs_exist_ok=True)
    return data_dir


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# QUERY over the template's anomalies, as an aligned table
QUERY_TABLE = (
    "sensor_id  n  top  first\n"
    "---------  -  ---  -------------------------\n"
    "s1         1  5.0  2024-03-01 01:00:00+00:00\n"
    "s2         3  4.5  2024-03-01 02:00:00+00:00\n"
    "(2 rows)\n"
)


# -- output formats -------------------------------------------------------------------------
def test_default_output_is_an_aligned_table(root, capsys):
    assert run(capsys, QUERY) == (0, QUERY_TABLE, "")


def test_table_output_shows_nulls_and_caps_rows(root, capsys):
    code, out, _ = run(capsys, "SELECT anomaly_id, value FROM anomalies ORDER BY anomaly_id", "--max-rows", "2")
    assert code == 0
    assert out == (
        "anomaly_id  value\n"
        "----------  -----\n"
        "a1           NULL\n"
        "a2           NULL\n"
        "(5 rows, first 2 shown; --max-rows 0 shows all, --format csv exports them)\n"
    )


def test_csv_output(root, capsys):
    code, out, _ = run(capsys, "SELECT anomaly_id, score, value, message, start_ts, date FROM anomalies WHERE anomaly_id IN ('a1', 'a5') ORDER BY 1", "--format", "csv")
    assert code == 0
    assert out == (
        "anomaly_id,score,value,message,start_ts,date\n"
        'a1,5.0,,"says ""hi"", twice",2024-03-01 01:00:00+00:00,2024-03-01\n'
        "a5,9.0,,spike,2024-03-01 05:00:00+00:00,2024-03-02\n"
    )


def test_json_output(root, capsys):
    code, out, _ = run(capsys, "SELECT anomaly_id, score, value, start_ts, [1, 2] AS l, 0.1 + 0.2 AS d, 'NaN'::DOUBLE AS nan FROM anomalies WHERE date = DATE '2024-03-02'", "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {"anomaly_id": "a5", "score": 9.0, "value": None, "start_ts": "2024-03-01T05:00:00+00:00", "l": [1, 2], "d": 0.3, "nan": None}
    ]
    assert out.count("\n") == 3  # one row per line
    code, out, _ = run(capsys, "SELECT 1 AS x WHERE false", "--format", "json")
    assert (code, out) == (0, "[]\n")


def test_parquet_output_is_written_from_the_arrow_result(root, tmp_path, capsys):
    target = tmp_path / "out" / "result.parquet"
    code, out, err = run(capsys, QUERY, "--format", "parquet", "--output", str(target))
    assert (code, out, err) == (0, "", f"Wrote 2 rows as parquet to {target}\n")
    table = pq.read_table(target)
    assert table.column_names == ["sensor_id", "n", "top", "first"]
    assert table.to_pydict()["n"] == [1, 3] and table.schema.field("first").type == pa.timestamp("us", tz="UTC")
    code, _, err = run(capsys, QUERY, "--format", "parquet")
    assert (code, err) == (2, "Error: --format parquet writes a binary file; give --output FILE\n")


def test_output_file_for_text_formats(root, tmp_path, capsys):
    target = tmp_path / "r.csv"
    assert run(capsys, "SELECT 1 AS a, 'x' AS b", "--format", "csv", "-o", str(target)) == (0, "", f"Wrote 1 row as csv to {target}\n")
    assert target.read_text() == "a,b\n1,x\n"
    assert run(capsys, "SELECT 1 AS a FROM range(0)", "--format", "json", "-o", str(target)) == (0, "", f"Wrote 0 rows as json to {target}\n")
    assert target.read_text() == "[]\n"


def test_explain_prints_the_plan(root, capsys):
    code, out, _ = run(capsys, "EXPLAIN SELECT message FROM anomalies WHERE date = DATE '2024-03-01' AND score > 1")
    assert code == 0 and "READ_PARQUET" in out.upper() and "explain_key" not in out


# -- where the SQL comes from --------------------------------------------------------------------
def test_sql_from_a_file_and_from_stdin(root, tmp_path, capsys, monkeypatch):
    f = tmp_path / "q.sql"
    f.write_text("-- how many\nSELECT count(*) AS n\nFROM anomalies;\n")
    assert run(capsys, "-f", str(f), "--format", "csv") == (0, "n\n5\n", "")
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 7 AS seven"))
    assert run(capsys, "-", "--format", "csv") == (0, "seven\n7\n", "")
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 8 AS eight"))  # piped, no argument
    assert run(capsys, "--format", "csv") == (0, "eight\n8\n", "")
    assert run(capsys, "SELECT 1", "-f", str(f))[2] == "Error: give the query as an argument or with --file, not both\n"
    assert run(capsys, "-f", str(tmp_path / "nope.sql"))[2] == f"Error: cannot read {tmp_path / 'nope.sql'}: No such file or directory\n"


def test_data_dir_override_and_a_missing_data_dir(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert run(capsys, "SELECT count(*) AS n FROM anomalies", "--data-dir", str(root), "--format", "csv") == (0, "n\n5\n", "")
    code, out, err = run(capsys, "SELECT 1")
    assert (code, out) == (2, "")
    assert err == f"Error: data directory {tmp_path / 'elsewhere'} does not exist; set IOT_DATA_DIR or pass --data-dir\n"


def test_every_model_is_available_by_name(root, capsys):
    project = load_project(default_project_dir())
    for name in project.models:
        code, out, err = run(capsys, f"SELECT count(*) AS n FROM {name}", "--format", "csv")
        assert (code, err) == (0, ""), name
    assert run(capsys, "SELECT n_anomalies, n_sensors FROM anomaly_summary_daily WHERE severity = 'critical' ORDER BY date", "--format", "csv") == (0, "n_anomalies,n_sensors\n3,2\n1,1\n", "")


# -- refused, each with one clear line and no traceback ----------------------------------------------
REFUSED = [
    ("COPY (SELECT 1) TO '{root}/lake/x.csv'", "COPY is refused: the session writes nothing; use --output FILE to save a result"),
    ("COPY (SELECT 1) TO '/tmp/iot_sql_test_copy.csv'", "COPY is refused"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/y.csv'", "EXPLAIN is allowed only on a SELECT"),
    ("EXPORT DATABASE '{root}/export'", "EXPORT DATABASE is refused: the session writes nothing"),
    ("SELECT * FROM read_csv('/etc/passwd')", 'Permission Error: Cannot access file "/etc/passwd" - file system operations are disabled by configuration (line 1, column 15); queries may read files under {root} only'),
    ("SELECT * FROM read_text('{root}/../outside.txt')", "Permission Error: Cannot access file"),
    ("SELECT * FROM glob('/etc/*')", "Permission Error: Cannot access file \"/etc/*\""),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "Permission Error"),
    ("ATTACH '{root}/evil.duckdb' AS evil", "ATTACH is refused: the session reads only the lake and the warehouse"),
    ("INSTALL httpfs", "INSTALL and LOAD are refused: the session cannot load extensions"),
    ("LOAD httpfs", "INSTALL and LOAD are refused"),
    ("SET enable_external_access = true", "SET, RESET and USE are refused: the session's settings are locked"),
    ("RESET allowed_directories", "SET, RESET and USE are refused"),
    ("SET VARIABLE x = 1", "SET, RESET and USE are refused"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are refused: the session is read-only; only SELECT and EXPLAIN run"),
    ("CREATE TEMP TABLE t AS SELECT 1", "CREATE statements are refused"),
    ("DROP VIEW anomalies", "DROP statements are refused"),
    ("PRAGMA database_list", "PRAGMA and IMPORT DATABASE are refused"),
    ("CALL pragma_version()", "CALL is refused; use SELECT * FROM the_function(...)"),
    ("SELECT 1; SELECT 2", "expected one SQL statement, got 2; run them one at a time"),
    ("", "no SQL statement given"),
    ("SELECT * FROM anomalies WHERE", 'Parser Error: syntax error at or near "WHERE" (line 1, column 25)'),
    ("SELECT sensor_id,\n       nope\nFROM anomalies", 'Binder Error: Referenced column "nope" not found in FROM clause!; Candidate bindings:'),
    ("SELECT * FROM no_such_table", "Catalog Error: Table with name no_such_table does not exist!"),
]


@pytest.mark.parametrize("sql, message", REFUSED, ids=[s.split("(")[0][:30] or "empty" for s, _ in REFUSED])
def test_refused_or_failing_queries_give_one_clear_line(root, capsys, sql, message):
    (root.parent / "outside.txt").write_text("secret")
    before = sorted(str(p) for p in root.rglob("*"))
    code, out, err = run(capsys, sql.format(root=root))
    assert code == 2 and out == ""
    assert err.startswith("Error: " + message.format(root=root)), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(str(p) for p in root.rglob("*")) == before  # nothing written
    assert not os.path.exists("/tmp/iot_sql_test_copy.csv")


def test_a_syntax_error_on_a_later_line_names_line_and_column(root, capsys):
    code, _, err = run(capsys, "SELECT *\nFROM anomalies\nWHER date = 1")
    assert (code, err) == (2, 'Error: Parser Error: syntax error at or near "date" (line 3, column 6)\n')


def test_debug_shows_the_traceback(root, capsys):
    with pytest.raises(Exception, match="COPY is refused"):
        main(["--debug", "sql", "COPY (SELECT 1) TO 'x.csv'"])
    with pytest.raises(Exception, match="COPY is refused"):  # after the subcommand too
        main(["sql", "--debug", "COPY (SELECT 1) TO 'x.csv'"])
    assert run(capsys, "COPY (SELECT 1) TO 'x.csv'")[0] == 2  # and without it, no traceback


# -- the installed console script ----------------------------------------------------------------
def test_the_console_script(root):
    script = Path(sys.executable).with_name("iot-platform")
    env = dict(os.environ, IOT_DATA_DIR=str(root))
    done = subprocess.run([str(script), "sql", QUERY, "--format", "csv"], capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "sensor_id,n,top,first\ns1,1,5.0,2024-03-01 01:00:00+00:00\ns2,3,4.5,2024-03-01 02:00:00+00:00\n", ""
    )
    done = subprocess.run([str(script), "sql", "SELECT * FROM read_csv('/etc/passwd')"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith('Error: Permission Error: Cannot access file "/etc/passwd"') and done.stderr.count("\n") == 1


# -- the interactive prompt ----------------------------------------------------------------------
def test_the_prompt_runs_queries_until_eof_and_survives_errors(root):
    lines = iter(["SELECT count(*) AS n", "FROM anomalies", ";", ".tables", "COPY (SELECT 1) TO 'x.csv';", ".nope", "SELECT 2 AS two;"])
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out, err = io.StringIO(), io.StringIO()
    with QuerySession(load_project(default_project_dir()), root) as session:
        assert repl(session, read, out, err) == 0
    assert prompts == ["sql> ", "...> ", "...> ", "sql> ", "sql> ", "sql> ", "sql> ", "sql> "]
    text = out.getvalue()
    assert "n\n-\n5\n(1 row)\n" in text
    assert "\nanomalies\nanomaly_points\nfault_labels\n" in text and "\nsensor_status\n" in text
    assert "two\n---\n  2\n(1 row)\n" in text
    assert err.getvalue() == (
        "Error: COPY is refused: the session writes nothing; use --output FILE to save a result\n"
        "Error: unknown command .nope; .tables lists the tables and models; .quit leaves (or Ctrl-D)\n"
    )


def test_no_query_on_a_terminal_starts_the_prompt(root, capsys, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["SELECT 42 AS answer;", ".quit"])
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    code, out, _ = run(capsys)
    assert code == 0 and "answer\n------\n    42\n(1 row)\n" in out
    assert run(capsys, "--format", "csv", "-o", "x.csv")[2] == "Error: --output needs a query (an argument, --file or stdin), not the interactive prompt\n"
