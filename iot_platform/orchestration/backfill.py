"""`backfill_days`: the lake's days START..END built by several workers, in one Dagster run.

Which work may run side by side follows from the partition mappings of the
assets: `readings` (and `fault_labels`) of one day depend on nothing but the
simulator and the landing zone, so any number of days build at once; but
`window_stats`/`anomalies` of day D read the readings of D-1 and D and the
window_stats of D-7..D-1, so that step goes day after day. The job says
exactly that as a graph:

    plan_backfill --(one chunk of consecutive days each)--> readings_days (x chunks)
                                                               \\-- collect --> detection_days

From 3 workers on, `backfill_days_in_waves` also spreads detection: a
window needs only its sensor's readings, so the window_stats of every past
day are built side by side first (wave 1), then each day's anomalies, which
read the previous days' windows as history, side by side too (wave 2: the
day's points and episodes under the day's lock; its windows, computed again
to the same bytes, stay as wave 1 wrote them, since other days are reading
them); yesterday and today, which micro-batches update
incrementally, still go last, in order:

    ... collect --> plan_waves --> window_days (x chunks) --> collect --> plan_days
        --> anomaly_days (x chunks) --> collect --> detection_after_waves (the days left, in order)

Wave 1 costs about half a day's detection per day again (reading the
readings and the panes twice), so with 2 workers, whose days already use
both cores through threads, the serial plan is the faster one.

Both leave the spreading to Dagster's executor: the multiprocess executor
(`max_concurrent` = workers) on one machine, ``k8s_job_executor`` (one pod
per step) on Kubernetes when ``IOT_BACKFILL_EXECUTOR=k8s``. Each step calls
the same functions as the assets (``build_readings_day``, ``build_day``) and
reports the same materializations, partition by partition, so the lake, the
UI and a later run cannot tell it from a one-worker backfill.
"""

# No `from __future__ import annotations`: Dagster inspects the op annotations at runtime.

import datetime as dt
import os
import time

import dagster as dg
from dagster import OpExecutionContext

from iot_platform.io.downstream import build_day, build_window_stats_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.malloc_tuning import tune_malloc
from iot_platform.orchestration.assets.fleet import day_metadata, drain_landing_first
from iot_platform.orchestration.metadata import anomaly_metadata, window_metadata
from iot_platform.orchestration.resources import DetectionResource, FleetResource, LakeResource

BACKFILL_EXECUTOR_ENV = "IOT_BACKFILL_EXECUTOR"
LAKE_ASSETS = ("readings", "fault_labels", "window_stats", "anomalies")


class BackfillConfig(dg.Config):
    start: str  # first day, YYYY-MM-DD
    end: str  # last day (inclusive)
    chunks: int = 1  # steps the readings are split into (normally the number of workers)


def day_chunks(start: dt.date, end: dt.date, chunks: int) -> list[list[dt.date]]:
    """START..END as ``chunks`` runs of consecutive days, sizes differing by at most one, none empty."""
    if chunks < 1:
        raise ValueError(f"chunks={chunks} is invalid; expected an integer >= 1")
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    n = min(chunks, len(days))
    size, extra = divmod(len(days), n)
    out, at = [], 0
    for i in range(n):
        step = size + (i < extra)
        out.append(days[at : at + step])
        at += step
    return out


@dg.op(out=dg.DynamicOut(list), description="Drain the landing zone, then cut the days into chunks for the workers.")
def plan_backfill(context: OpExecutionContext, config: BackfillConfig, lake: LakeResource, fleet: FleetResource,
                  detection: DetectionResource):  # fmt: skip
    start, end = dt.date.fromisoformat(config.start), dt.date.fromisoformat(config.end)
    chunks = day_chunks(start, end, config.chunks)
    drain_landing_first(context.log, [d for c in chunks for d in c], lake, fleet, detection)
    for chunk in chunks:
        key = f"{chunk[0]:%Y_%m_%d}__{chunk[-1]:%Y_%m_%d}"
        yield dg.DynamicOutput([d.isoformat() for d in chunk], mapping_key=key)


@dg.op(description="Build `readings` and `fault_labels` of a chunk of days (independent of every other day).")
def readings_days(context: OpExecutionContext, days: list, lake: LakeResource, fleet: FleetResource) -> list:
    tune_malloc()  # whole days in NumPy (io.malloc_tuning)
    params = fleet.params()
    for key in days:
        s = build_readings_day(lake.lake, params, dt.date.fromisoformat(key), now_us=time.time_ns() // 1000, write_labels=True)
        context.log.info(f"readings {key}: {s.rows} rows, {s.rejected} rejected, missing {s.missing_rate:.2%}")
        yield dg.AssetMaterialization("readings", partition=key, metadata=day_metadata(s))
        yield dg.AssetMaterialization("fault_labels", partition=key,
                                      metadata={"dagster/row_count": s.labels, "simulated": params is not None})  # fmt: skip
    yield dg.Output(days)


@dg.op(description="Build `window_stats` and `anomalies` day after day (day D needs D-1 .. D-7 built first).")
def detection_days(context: OpExecutionContext, chunks: list, lake: LakeResource, fleet: FleetResource,
                   detection: DetectionResource) -> None:  # fmt: skip
    yield from _detect(context, sorted(k for chunk in chunks for k in chunk), lake, fleet, detection)
    yield dg.Output(None)


def _detect(context: OpExecutionContext, keys: list, lake: LakeResource, fleet: FleetResource,
            detection: DetectionResource, windows_written: bool = False):  # fmt: skip
    """Build the days ``keys`` in this order with the assets' own function, reporting their materializations."""
    tune_malloc()
    settings = detection.settings(fleet.params(), lake.lake.root)
    for key in keys:
        day = dt.date.fromisoformat(key)
        out = build_day(lake.lake, day, settings, now_us=time.time_ns() // 1000, windows_written=windows_written)
        context.log.info(f"{day}: {out.window_stats.num_rows} windows, {out.anomalies.num_rows} episodes from {out.points.num_rows} points")
        yield dg.AssetMaterialization("window_stats", partition=key, metadata=window_metadata(out.window_stats))
        yield dg.AssetMaterialization("anomalies", partition=key, metadata=anomaly_metadata(lake.lake, day, out.anomalies))


def past_days(keys: list, today: dt.date) -> list:
    """The day keys a micro-batch no longer updates incrementally: before yesterday."""
    return [k for k in keys if dt.date.fromisoformat(k) < today - dt.timedelta(days=1)]


@dg.op(out=dg.DynamicOut(list), description="Wave 1's chunks: the past days of each readings chunk.")
def plan_waves(chunks: list):
    today = dt.datetime.now(dt.UTC).date()
    waves = [past_days(chunk, today) for chunk in chunks]
    waves = [w for w in waves if w] or [[]]  # always one mapping: an empty fan-out would skip what follows
    for w in waves:
        yield dg.DynamicOutput(w, mapping_key=f"{w[0].replace('-', '_')}__{w[-1].replace('-', '_')}" if w else "none")


@dg.op(description="Wave 1: `window_stats` of a chunk of past days (a window needs no other day's windows).")
def window_days(context: OpExecutionContext, days: list, lake: LakeResource, fleet: FleetResource,
                detection: DetectionResource) -> list:  # fmt: skip
    tune_malloc()
    settings = detection.settings(fleet.params(), lake.lake.root)
    for key in days:
        ws = build_window_stats_day(lake.lake, dt.date.fromisoformat(key), settings)
        context.log.info(f"{key}: {ws.num_rows} windows (wave 1)")
    return days


@dg.op(out=dg.DynamicOut(list), description="Wave 2's chunks: the days wave 1 built windows for.")
def plan_days(waves: list):
    waves = [w for w in waves if w] or [[]]
    for w in waves:
        yield dg.DynamicOutput(w, mapping_key=f"{w[0].replace('-', '_')}__{w[-1].replace('-', '_')}" if w else "none")


@dg.op(description="Wave 2: `window_stats` and `anomalies` of a chunk of past days, their history built by wave 1.")
def anomaly_days(context: OpExecutionContext, days: list, lake: LakeResource, fleet: FleetResource,
                 detection: DetectionResource):  # fmt: skip
    yield from _detect(context, days, lake, fleet, detection, windows_written=True)
    yield dg.Output(days)


@dg.op(description="`window_stats` and `anomalies` of the days the waves left (yesterday, today), in order.")
def detection_after_waves(context: OpExecutionContext, chunks: list, done: list, lake: LakeResource,
                          fleet: FleetResource, detection: DetectionResource) -> None:  # fmt: skip
    built = {k for chunk in done for k in chunk}
    yield from _detect(context, sorted(k for chunk in chunks for k in chunk if k not in built), lake, fleet, detection)
    yield dg.Output(None)


def _executor() -> dg.ExecutorDefinition:
    kind = os.environ.get(BACKFILL_EXECUTOR_ENV) or "multiprocess"
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor  # only in the Kubernetes image (deploy/Dockerfile)

        return k8s_job_executor
    raise ValueError(f"{BACKFILL_EXECUTOR_ENV}={kind!r} is invalid; expected multiprocess or k8s")


@dg.job(
    name="backfill_days",
    executor_def=_executor(),
    description=(
        "Build the lake's days START..END with several workers: readings in parallel chunks, then "
        "window_stats and anomalies day after day. Set the workers with the executor's max_concurrent."
    ),
)
def backfill_days():
    detection_days(plan_backfill().map(readings_days).collect())


@dg.job(
    name="backfill_days_in_waves",
    executor_def=_executor(),
    description=(
        "Build the lake's days START..END with many workers: readings in parallel chunks, then the window_stats "
        "of every past day side by side, then their anomalies side by side; yesterday and today last, in order."
    ),
)
def backfill_days_in_waves():
    chunks = plan_backfill().map(readings_days).collect()
    done = plan_days(plan_waves(chunks).map(window_days).collect()).map(anomaly_days).collect()
    detection_after_waves(chunks, done)


WAVES_FROM_WORKERS = 3  # below, the serial detection plan is faster (see the module docstring)


def backfill_job_from_definitions() -> dg.JobDefinition:
    """``backfill_days`` with the code location's resources bound: what each worker process reconstructs."""
    from iot_platform.definitions import defs

    return defs.resolve_job_def("backfill_days")


def backfill_in_waves_job_from_definitions() -> dg.JobDefinition:
    """``backfill_days_in_waves``, likewise."""
    from iot_platform.definitions import defs

    return defs.resolve_job_def("backfill_days_in_waves")


def reconstructable_backfill_job(workers: int):
    """The job a ``--workers`` backfill runs, reconstructable in each worker process."""
    if workers >= WAVES_FROM_WORKERS:
        return dg.reconstructable(backfill_in_waves_job_from_definitions)
    return dg.reconstructable(backfill_job_from_definitions)
