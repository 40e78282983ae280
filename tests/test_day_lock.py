"""A whole-day build and a micro-batch of the same day serialize on one day lock (issue 10, item 2).

The micro-batch is injected exactly where it used to corrupt the day: after
the backfill computed the day and before it wrote it. It must wait for the
lock (seen in /proc/locks as a blocked flock on the day's lock file), and the
day must end equal to a clean whole-day build: no duplicated, no missing window.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core import simulator as sim
from iot_platform.io.commit import DERIVED_LOCK
from iot_platform.io.downstream import build_day, compute_day, make_update_downstream
from iot_platform.io.lake import Lake, partition_name
from iot_platform.io.microbatch import run_micro_batch
from iot_platform.orchestration.assets.detection import window_stats_and_anomalies
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.resources import ClockResource, DetectionResource, FleetResource, LakeResource

DAY = dt.date(2024, 1, 3)
PREV = DAY - dt.timedelta(days=1)
D0 = sim.day_start_us(DAY)
H, S = 3_600_000_000, 1_000_000


def _blocked_on(path: Path) -> bool:
    """True when some process waits for a flock on ``path`` (a '->' line of /proc/locks)."""
    ino = os.stat(path).st_ino
    return any("->" in line and f":{ino} " in line for line in Path("/proc/locks").read_text().splitlines())


def test_a_micro_batch_between_compute_and_write_waits_and_the_day_stays_whole(instance, tmp_path: Path):
    root = tmp_path / "data"
    fleet = FleetResource(seed=7, n_sensors=3, sample_interval_s=10.0)
    resources = {"lake": LakeResource(data_dir=str(root)), "fleet": fleet, "detection": DetectionResource(),
                 "clock": ClockResource()}  # fmt: skip
    assert dg.materialize([fleet_readings, window_stats_and_anomalies], instance=instance, resources=resources,
                          partition_key=PREV.isoformat()).success  # fmt: skip
    lake = Lake(root)
    settings = DetectionResource().settings(fleet.params())
    update = make_update_downstream(settings)

    def batch(until: int) -> None:
        run_micro_batch(lake, f"mb-{until}", until, fleet=fleet.params(), landing=root / "landing", first_day=PREV,
                        downstream=update)  # fmt: skip

    for until in (D0 + 45 * S, D0 + 6 * H):
        batch(until)
    lock_file = lake.lake_dir / ".locks" / DERIVED_LOCK / f"{partition_name(DAY)}.lock"
    nxt = D0 + 6 * H + 30 * S
    mb = threading.Thread(target=batch, args=(nxt,))
    seen = {}

    def inject() -> None:  # runs with the day lock held, between compute and write
        mb.start()
        while mb.is_alive() and not _blocked_on(lock_file):
            mb.join(0.01)
        seen["waited"] = mb.is_alive()

    build_day(lake, DAY, settings, now_us=D0 + 6 * H, before_write=inject)
    mb.join()

    ws = lake.read("window_stats", [DAY]).sort_by([("sensor_id", "ascending"), ("window_end", "ascending")])
    clean = compute_day(lake, DAY, settings, now_us=nxt)
    keys = pc.binary_join_element_wise(ws["sensor_id"], pc.cast(ws["window_end"].cast(pa.int64()), pa.string()), "|")
    assert len(pc.unique(keys)) == ws.num_rows  # no duplicated window
    assert ws.num_rows == clean.window_stats.num_rows == 3 * (6 * 60)  # no missing one: to 06:00 (watermark 06:00:00)
    assert ws.equals(clean.window_stats)
    got = lake.read("anomalies", [DAY]).sort_by([("anomaly_id", "ascending")])
    assert got.equals(clean.anomalies.sort_by([("anomaly_id", "ascending")]))
    assert seen == {"waited": True}  # the batch waited for the lock, not for luck
