"""`iot-platform sql` limits: a timeout, a memory limit, Ctrl-C and SIGTERM always stop a query,
with one line and no temp directory left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iot_platform.cli import main
from iot_platform.io.query_limits import QueryLimits, parse_size, remove_stale_temp_dirs

CROSS_JOIN = "SELECT count(*) FROM range(1000000) a, range(1000000) b"  # ~10^12 rows: minutes, or hours
SCRIPT = Path(sys.executable).with_name("iot-platform")


def sql(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_timeout_stops_a_cross_join(data_dir, capsys):
    assert sql(capsys, "--timeout", "2", CROSS_JOIN) == (
        2, "", "Error: query stopped after 2 s (--timeout 2); filter on `date` to read fewer days, or raise --timeout\n"
    )


def test_a_list_aggregate_is_stopped_by_the_memory_limit(data_dir, capsys):
    code, out, err = sql(capsys, "--memory-limit", "200MB", "SELECT list(range) FROM range(100000000)")
    assert (code, out) == (2, "")
    assert err.startswith("Error: query stopped: it needs more than the --memory-limit of 190.7 MiB (Out of Memory Error: ")
    assert err.endswith("); aggregate more, select fewer rows, or raise --memory-limit\n") and err.count("\n") == 1


def test_memory_duckdb_does_not_manage_is_watched_too(data_dir, capsys):
    # a 50 M row result: DuckDB spills it, but its Arrow copy for the output grows the process
    code, out, err = sql(capsys, "--memory-limit", "200MB", "--format", "csv", "-o", os.devnull,
                         "SELECT range, range::VARCHAR AS s FROM range(50000000)")  # fmt: skip
    assert (code, out) == (2, "")
    assert err.startswith("Error: query stopped: it took ") and err.count("\n") == 1
    assert err.endswith(" of memory, over the --memory-limit of 190.7 MiB; aggregate more, select fewer rows, or raise --memory-limit\n")


@pytest.mark.parametrize("argv, message", [
    (["--memory-limit", "5 potatoes"], "--memory-limit: size '5 potatoes' is invalid; expected a number with a unit such as 500MB, 2GB or 1GiB"),
    (["--memory-limit", "1MB"], "--memory-limit: memory limit 976.6 KiB is too small; expected at least 32 MiB"),
    (["--timeout", "-1"], "--timeout -1 is invalid; expected a number of seconds > 0, or 0 for no limit"),
])  # fmt: skip
def test_bad_limits_are_refused(data_dir, capsys, argv, message):
    assert sql(capsys, *argv, "SELECT 1") == (2, "", f"Error: {message}\n")


def test_sizes_and_defaults():
    assert [parse_size(s) for s in ("500MB", "2GiB", "1.5 GB", "1000", "64kib")] == [500 * 10**6, 2 * 2**30, 1_500_000_000, 1000, 65536]
    assert QueryLimits().memory <= 4 * 2**30 and QueryLimits().timeout_s == 60


def test_the_session_runs_under_the_limits_and_the_user_still_cannot_set_them(data_dir, capsys):
    code, out, _ = sql(capsys, "--memory-limit", "1GiB", "--format", "csv",
                       "SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') LIKE '%/iot-sql-%/spill' AS t")  # fmt: skip
    assert (code, out) == (0, "m,t\n1.0 GiB,true\n")
    assert sql(capsys, "SET memory_limit = '100GB'") == (2, "", "Error: SET, RESET and USE are refused: the session's settings are locked\n")
    assert sql(capsys, "SELECT * FROM duckdb_settings() WHERE name = 'lock_configuration' AND value = 'true'")[1].endswith("(1 row)\n")


# -- signals, with the installed script in a real process ------------------------------------------
def _start(data_dir: Path, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, IOT_DATA_DIR=str(data_dir), TMPDIR=str(tmp))
    query = "SELECT count(*) FROM range(100000000) a, range(100000000) b"
    proc = subprocess.Popen([str(SCRIPT), "sql", "--timeout", "3600", query], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp.glob(f"iot-sql-{proc.pid}-*/session.duckdb")):  # the session is open
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # into the query
    return proc


@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGINT, 130, "Error: query cancelled (Ctrl-C)\n"),
    (signal.SIGTERM, 143, "Error: stopped by SIGTERM\n"),
])  # fmt: skip
def test_a_signal_stops_the_query_and_removes_the_temp_directory(data_dir, tmp_path, sig, code, message):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _start(data_dir, tmp)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)  # the query alone runs for hours: stopping it is what ends this
    assert (proc.returncode, out, err) == (code, "", message)
    assert list(tmp.iterdir()) == []


def test_temp_directories_of_killed_sessions_are_removed_by_the_next(data_dir, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _start(data_dir, tmp)
    proc.kill()  # SIGKILL: nothing can clean up
    proc.communicate(timeout=10)
    assert [p.name.split("-")[2] for p in tmp.iterdir()] == [str(proc.pid)]
    (tmp / "iot-sql-notapid-x").mkdir()  # not ours: kept
    env = dict(os.environ, IOT_DATA_DIR=str(data_dir), TMPDIR=str(tmp))
    done = subprocess.run([str(SCRIPT), "sql", "SELECT 1 AS one"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "one\n---\n  1\n(1 row)\n")
    assert [p.name for p in tmp.iterdir()] == ["iot-sql-notapid-x"]
    assert remove_stale_temp_dirs(tmp) == []
