"""Worker processes for the day-sized work of a backfill step.

Our NumPy and Arrow work holds the GIL most of its time (measured with
``py-spy --gil``: about three quarters of a run's CPU time), so the threads of
one process cannot fill many cores. A backfill step that builds many days (or
many sensors of one day) hands whole days, or chunks of sensors, to these
processes instead. On 2 cores the threads fill both already: the default is
then no pool (:func:`worker_processes`).

The pool is started lazily with ``spawn`` (never ``fork``: the step's process
runs Dagster's threads) and reused by every step of the process; its workers
open the lake from the same ``(root, store)`` for each task and read and
write it themselves, so only small results travel between the processes. The
outputs do not depend on the number of workers: callers collect results in
submission order.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from iot_platform.io.lake import Lake
from iot_platform.io.malloc_tuning import tune_malloc
from iot_platform.io.objstore import ObjectStore
from iot_platform.settings import positive_int_env

PROCESSES_ENV = "IOT_WORKER_PROCESSES"

_LOCK = threading.Lock()
_POOL: tuple[int, cf.ProcessPoolExecutor] | None = None


def worker_processes() -> int:
    """``$IOT_WORKER_PROCESSES``; default: 1 on up to 2 cores, else one per core (at most 4: each holds a
    chunk of a day in memory).

    1 turns the pool off: everything runs in the step's own process. On 2 cores
    the step's own threads keep both busy already (7 days x 100 sensors, 1 vs 2
    processes alternated: 39.1 / 47.1 s vs 40.9 / 46.2 s, more CPU and 0.4 GB
    more memory with 2); the processes are for machines with cores the threads
    cannot fill.
    """
    n = positive_int_env(PROCESSES_ENV)
    if n is None:
        cores = len(os.sched_getaffinity(0))
        return 1 if cores <= 2 else min(4, cores)
    return n


def day_processes() -> int:
    """Worker processes for whole days (a range's readings, its audits): half of :func:`worker_processes`.

    A day's readings build keeps about two cores busy by itself (its simulate and
    validate threads and its Parquet writer), an audit two DuckDB threads: on two
    cores, days side by side only contend (measured: 3 days x 100 sensors, readings
    step 14.5 s in one process, 19.3 s in two). A day's detection, single-threaded
    NumPy per chunk, uses every worker process.
    """
    return max(1, worker_processes() // 2)


def pool(workers: int) -> cf.ProcessPoolExecutor:
    """The process's pool of ``workers`` spawned processes (made once, remade if broken or resized)."""
    global _POOL
    with _LOCK:
        if _POOL is not None and (_POOL[0] != workers or getattr(_POOL[1], "_broken", False)):
            _POOL[1].shutdown(wait=True, cancel_futures=True)
            _POOL = None
        if _POOL is None:
            _POOL = (workers, cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                                     initializer=_die_with_parent))  # fmt: skip
        return _POOL[1]


def _die_with_parent() -> None:
    """A worker exits when the process that started it is gone: a killed run leaves no worker writing on.

    A watch on the parent's pid (twice a second), not ``PR_SET_PDEATHSIG``: that one fires when the
    *thread* that started the worker ends, which may be long before the process does. Every unit a
    worker writes (a day, a chunk's result) is atomic, so a killed worker loses nothing.
    """
    tune_malloc()  # the worker computes days too
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="iot-parent-watch", daemon=True).start()


def shutdown() -> None:
    """Stop the workers (at exit, before the interpreter tears its modules down)."""
    global _POOL
    with _LOCK:
        if _POOL is not None:
            _POOL[1].shutdown(wait=True, cancel_futures=True)
            _POOL = None


atexit.register(shutdown)  # once: at exit, before the interpreter tears its modules down


def worker_lake(root: str, store: ObjectStore | None) -> Lake:
    """The lake, opened afresh for each task (a worker outlives the steps, and tests, that used it)."""
    return Lake(Path(root), store)


def map_in_workers(fn: Callable[..., Any], tasks: Iterable[tuple], processes: int) -> Iterator[Any]:
    """``fn(*task)`` for each task, in worker processes; results in task order.

    At most ``processes`` tasks are in flight, so a lazy ``tasks`` is read as
    the workers take them and memory follows them, not the whole list. A task's exception is raised here, in order; the tasks not
    started yet are cancelled (those started finish: each is a whole unit).
    """
    workers = pool(processes)
    pending: collections.deque[cf.Future] = collections.deque()
    try:
        for task in tasks:
            if len(pending) >= processes:
                yield pending.popleft().result()
            pending.append(workers.submit(fn, *task))
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
