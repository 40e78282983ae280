"""glibc's malloc settings for the steps that compute whole days in NumPy.

A day is computed in frames of about a million readings: every frame allocates
and frees dozens of 8 MB arrays. glibc serves each of them with a fresh
``mmap`` (above its dynamic threshold) and returns it on free, so every frame
page-faults all its memory in again: a fifth of the chain's CPU was system
time. With big blocks served from the heap (up to 32 MB) and the heap trimmed
only past 128 MB free, the same pages are reused: 3 days x 100 sensors through
the chain, 12.4 / 13.4 s and 0.77-0.81 M page faults before, 10.0-11.6 s and
0.42-0.56 M after, peak RSS within 140 MB of before (benchmarks in docs/benchmarks.md).

Process-wide, so it is set by the steps that compute days (and their worker
processes), not by the webserver or the daemon. A no-op where the C library is
not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum for a heap-served block on 64-bit
TRIM_THRESHOLD = 128 << 20


@functools.cache
def tune_malloc() -> bool:
    """Apply the settings once per process; True if glibc took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
