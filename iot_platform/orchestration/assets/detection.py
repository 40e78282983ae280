"""`window_stats` and `anomalies`: daily partitions computed from `readings`, in one step per day.

A day reads `readings` of D and the tail of D-1 (a lookback partition
mapping), so windows that straddle midnight are complete, and the previous
days' `window_stats` for the drift baseline. Each partition is a pure
function of those inputs. Both tables (and the alert points behind the
episodes) come from one pass and are written together under the day's lock.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import concurrent.futures as cf
import time

import dagster as dg
from dagster import AssetExecutionContext

from iot_platform.core.schemas import ANOMALIES, WINDOW_STATS
from iot_platform.io.day_builds import build_days
from iot_platform.io.day_pool import worker_processes
from iot_platform.io.downstream import build_day
from iot_platform.io.malloc_tuning import tune_malloc
from iot_platform.orchestration import chain_handoff
from iot_platform.orchestration.freshness import LIVE
from iot_platform.orchestration.metadata import days_of, derived_metadata
from iot_platform.orchestration.partitions import daily_partitions
from iot_platform.orchestration.resources import DetectionResource, FleetResource, LakeResource

WINDOW_DOC = """Per-sensor hopping windows (default 300 s long, every 60 s), one row per (sensor_id, window_end).

A window belongs to the day its window_end falls in; windows that straddle
midnight use the previous day's readings. missing_rate = 1 - n_readings /
expected, with expected from the sensor's own sample interval (1 Hz, 5 min,
...). battery_level is the last reading in the window."""

ANOMALY_DOC = """Anomaly episodes: consecutive alerts of one (sensor, type) merged into one row.

Types: spike (robust z-score against the sensor's trailing window),
sensor_fault (physically impossible value: a broken sensor, not an outlier),
drift (two-sided CUSUM of window means against a 7-day baseline), flatline
(stuck sensor), high_vibration, low_battery, high_missing_rate,
silent_sensor (a sensor that stopped reporting), systemic (more than half
the fleet alerting in the same window; its members carry its systemic_id).
anomaly_id is stable across reruns. severity is warning or critical; score:
higher means more anomalous."""

_PREV_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True)
_HISTORY = dg.TimeWindowPartitionMapping(start_offset=-7, end_offset=-1, allow_nonexistent_upstream_partitions=True)


def _now_us() -> int:
    return time.time_ns() // 1000


def _figures(lake: LakeResource, day, out) -> tuple:
    return day, *derived_metadata(lake.lake, day, out)


def _schema(table) -> dict:
    return {"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in table])}


@dg.multi_asset(
    specs=[
        dg.AssetSpec("window_stats", description=WINDOW_DOC, kinds={"parquet", "numpy"}, group_name="lake",
                     deps=[dg.AssetDep("readings", partition_mapping=_PREV_DAY)], metadata=_schema(WINDOW_STATS)),
        # the previous days' window_stats are the drift baseline and the detectors' context
        dg.AssetSpec("anomalies", description=ANOMALY_DOC, kinds={"parquet", "numpy"}, group_name="lake",
                     deps=[dg.AssetDep("readings", partition_mapping=_PREV_DAY),
                           dg.AssetDep("window_stats", partition_mapping=_HISTORY)],
                     metadata=_schema(ANOMALIES), freshness_policy=LIVE),
    ],  # fmt: skip
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # One step per day: the windows, the alert points and the episodes come from one pass over the
    # readings and are written under one lock (io.downstream.day_lock), so a micro-batch never sees
    # one table rebuilt and not the others. Materializing one without the other would break that.
    can_subset=False,
)
def window_stats_and_anomalies(context: AssetExecutionContext, lake: LakeResource, fleet: FleetResource,
                               detection: DetectionResource):  # fmt: skip
    tune_malloc()  # whole days in NumPy: big arrays reused from the heap (io.malloc_tuning)
    settings = detection.settings(fleet.params(), lake.lake.root)
    processes = worker_processes()  # chunks of sensors computed in worker processes (io.day_builds; the same bytes)

    def report(day, ws_meta: dict, anomaly_meta: dict, summary: str) -> None:
        context.log.info(summary)
        # per partition, so each day of a single-run backfill carries its own figures
        context.add_asset_metadata(ws_meta, asset_key="window_stats", partition_key=day.isoformat())
        context.add_asset_metadata(anomaly_meta, asset_key="anomalies", partition_key=day.isoformat())

    days = days_of(context)
    # days this run's readings step computed in its pass over them, unchanged since (orchestration.chain_handoff)
    handed = chain_handoff.take(lake.lake, context.run.run_id, days, settings)
    for day, h in sorted(handed.items()):
        report(day, h.window_metadata, h.anomaly_metadata, h.summary)
    if handed:
        context.log.info(f"{len(handed)} of {len(days)} days computed by this run's readings step, in the same pass")
    days = [d for d in days if d not in handed]
    if processes > 1:  # streamed: memory follows one day (and the previous day's figures)
        built = build_days(lake.lake, days, settings, now_us=_now_us, processes=processes)
    else:
        built = ((day, build_day(lake.lake, day, settings, now_us=_now_us())) for day in days)
    with cf.ThreadPoolExecutor(max_workers=1) as pool:  # a day's figures and plot, made while the next day is computed
        previous = None
        for day, out in built:
            if previous is not None:
                report(*previous.result())
            previous = pool.submit(_figures, lake, day, out)
        if previous is not None:
            report(*previous.result())
    yield dg.MaterializeResult(asset_key="window_stats")
    yield dg.MaterializeResult(asset_key="anomalies")
