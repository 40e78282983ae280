"""Limits of one ad hoc DuckDB query: a timeout, a memory ceiling, and a stop on Ctrl-C.

DuckDB runs a query in C++ without returning to Python, so neither a Python
timer nor a signal handler can stop it by raising. :func:`run_limited` runs
the query in a worker thread while the calling (main) thread waits in short
steps: every step it checks the deadline and the process's resident memory,
and a signal (Ctrl-C, or SIGTERM turned into an exception by the CLI) is
delivered to it between steps. Any of these calls ``conn.interrupt()``, which
DuckDB honours between vectors of work; if the query still runs after a grace
period, the worker is abandoned and the caller is told so (the CLI then exits
the process: a DuckDB connection busy in another thread cannot be closed).

Memory has two guards: DuckDB's own ``memory_limit`` (it spills to disk to
stay under it, or fails with an Out of Memory error), and the watchdog here,
which stops the query when the process has grown by more than
``WATCHDOG_FACTOR`` times the limit since the query started: the memory DuckDB
does not manage (the result converted to Arrow, an extension's allocations)
counts too.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 60.0
WATCHDOG_FACTOR = 1.5
_STEP_S = 0.05
_GRACE_S = 5.0
_MIN_MEMORY = 32 * 2**20
_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.I)


def parse_size(text: str) -> int:
    """A DuckDB size string (``500MB``, ``2GB``, ``1.5GiB``, ``1000000``) in bytes."""
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"size {text!r} is invalid; expected a number with a unit such as 500MB, 2GB or 1GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: int) -> str:
    """``4 GiB``, ``190.7 MiB``, ``512 bytes``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def total_memory() -> int:
    """Physical memory, or the cgroup's limit when that is lower (a container)."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw.isdigit():
            total = min(total, int(raw))
    except OSError:
        pass
    return total


def default_memory_limit() -> int:
    """A modest share of the machine: a quarter of its memory, at most 4 GiB."""
    return max(_MIN_MEMORY, min(total_memory() // 4, 4 * 2**30))


def process_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class QueryLimits:
    """``timeout_s`` None: no deadline. ``memory`` in bytes."""

    timeout_s: float | None = DEFAULT_TIMEOUT_S
    memory: int = dataclasses.field(default_factory=default_memory_limit)
    grace_s: float = _GRACE_S

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout {self.timeout_s!r} s is invalid; expected a number of seconds > 0 (or none)")
        if self.memory < _MIN_MEMORY:
            raise ValueError(f"memory limit {format_size(self.memory)} is too small; expected at least {format_size(_MIN_MEMORY)}")

    def temp_size(self, temp_dir: Path) -> int:
        """How much the query may spill to disk: ten times its memory, at most half the free space."""
        return max(_MIN_MEMORY, min(10 * self.memory, shutil.disk_usage(temp_dir).free // 2))


class LimitExceeded(Exception):
    """The query was stopped. ``abandoned``: it did not stop within the grace period."""

    def __init__(self, message: str, abandoned: bool = False):
        super().__init__(message)
        self.abandoned = abandoned


def run_limited(
    conn: duckdb.DuckDBPyConnection, work: Callable[[], T], limits: QueryLimits, on_abandon: Callable[[], None] | None = None
) -> T:
    """Run ``work`` (a query on ``conn``) in a worker thread, stopping it at the first limit hit.

    Raises :class:`LimitExceeded` for a timeout or the memory watchdog; an
    exception delivered to this thread while waiting (``KeyboardInterrupt``)
    interrupts the query and is re-raised once it stopped (or was abandoned).
    Call from the main thread, so that signals reach the wait. ``on_abandon`` is
    called when the query did not stop within the grace period.
    """
    outcome: dict[str, object] = {}
    # An Event, not Thread.join: a signal handler raising inside join() can leave the
    # Thread object believing the worker has ended while it still holds the connection.
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name="iot-sql-query", daemon=True)
    started = time.monotonic()
    baseline = process_rss()
    ceiling = baseline + int(WATCHDOG_FACTOR * limits.memory)
    worker.start()
    try:
        while not done.wait(_STEP_S):
            if limits.timeout_s is not None and time.monotonic() - started > limits.timeout_s:
                _stop(conn, done, limits, on_abandon, f"query stopped after {limits.timeout_s:g} s (--timeout {limits.timeout_s:g}); "
                      "filter on `date` to read fewer days, or raise --timeout")  # fmt: skip
            rss = process_rss()
            if rss > ceiling:
                _stop(conn, done, limits, on_abandon, f"query stopped: it took {format_size(rss - baseline)} of memory, over the "
                      f"--memory-limit of {format_size(limits.memory)}; aggregate more, select fewer rows, or raise --memory-limit")  # fmt: skip
    except LimitExceeded:
        raise
    except BaseException:
        if not done.is_set():
            conn.interrupt()
            if not done.wait(limits.grace_s) and on_abandon is not None:
                on_abandon()
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def _stop(
    conn: duckdb.DuckDBPyConnection, done: threading.Event, limits: QueryLimits, on_abandon: Callable[[], None] | None, message: str
) -> None:
    conn.interrupt()
    stopped = done.wait(limits.grace_s)
    if not stopped and on_abandon is not None:
        on_abandon()
    raise LimitExceeded(message, abandoned=not stopped)


# -- the session's temp directory -----------------------------------------------------------------
TEMP_PREFIX = "iot-sql-"


def session_temp_dir() -> tempfile.TemporaryDirectory:
    """A private temp directory named after this process; those of dead processes are removed first."""
    remove_stale_temp_dirs()
    return tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-")


def remove_stale_temp_dirs(parent: Path | None = None) -> list[Path]:
    """Remove ``iot-sql-<pid>-*`` directories of ours whose process is gone (it was SIGKILLed)."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for d in parent.glob(f"{TEMP_PREFIX}*-*"):
        pid = d.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not d.is_dir() or d.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or reused: then left for a later run)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed
