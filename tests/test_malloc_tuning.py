"""The compute steps' malloc settings: big NumPy arrays reuse heap pages instead of faulting fresh ones in."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from iot_platform.io.malloc_tuning import tune_malloc
    assert tune_malloc()
a = np.ones(1 << 20)  # 8 MB, as a frame's arrays are
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):  # allocate, touch and free a frame's array 50 times
    a = np.ones(1 << 20)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_tuned_steps_reuse_the_pages_of_freed_arrays():
    untuned, tuned = _faults("plain"), _faults("tuned")
    # glibc maps each 8 MB block afresh and unmaps it on free: at least one fault per 2 MB huge page each time
    assert untuned >= 50 * 4
    assert tuned < untuned / 10


def test_tuning_is_applied_once_and_says_so():
    from iot_platform.io.malloc_tuning import tune_malloc

    assert tune_malloc() is True and tune_malloc() is True
