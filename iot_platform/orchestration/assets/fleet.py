"""`readings` and `fault_labels`: the simulated fleet and ingested data, by UTC day."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import concurrent.futures as cf
import datetime as dt
import time
from collections.abc import Iterator

import dagster as dg
from dagster import AssetExecutionContext

from iot_platform.core.schemas import READINGS
from iot_platform.io.chain import build_chain_days
from iot_platform.io.day_pool import day_processes, worker_processes
from iot_platform.io.downstream import make_update_downstream
from iot_platform.io.ingest import DayStats, build_readings_days
from iot_platform.io.malloc_tuning import tune_malloc
from iot_platform.io.microbatch import drain_landing
from iot_platform.io.pass_audits import Vouched
from iot_platform.orchestration import chain_handoff
from iot_platform.orchestration.checks import passed_in_pass
from iot_platform.orchestration.freshness import LIVE
from iot_platform.orchestration.metadata import days_of, derived_metadata, md_table, ts_text
from iot_platform.orchestration.partitions import daily_partitions, start_date
from iot_platform.orchestration.resources import DetectionResource, FleetResource, LakeResource
from iot_platform.settings import landing_dir

READINGS_DOC = """Sensor readings, one row per (sensor_id, ts), sorted by that key.

Columns: sensor_id, ts (UTC, microseconds), temperature (C), humidity (%RH),
pressure (hPa), vibration (g), battery_level (%), then provenance: source
(simulator, serial:<port>, import:<file>) and seq (the device's sequence
number, where it sent one). A day is the simulated fleet (up to now, for
today) plus every landing file ingested for it, validated: duplicates
absorbed, bad rows moved to `rejected_readings` with their reason.
Values outside the physical range are broken-sensor readings, kept for the
sensor_fault detector."""

LABELS_DOC = """Ground truth of the simulated fleet: every fault injected, one row per episode.

fault_type is a sensor fault (spike, sensor_fault, drift, flatline,
high_vibration, low_battery, outage) or a delivery fault (duplicates,
out_of_order, clock_skew). An episode spanning midnight appears in each day
it touches, with the same label_id."""


def day_metadata(s: DayStats) -> dict:
    return {
        "dagster/row_count": s.rows,
        "sensors": s.sensors,
        "time_range": f"{ts_text(s.ts_min)} .. {ts_text(s.ts_max)}",
        "missing_rate": round(s.missing_rate, 4),
        "rejected_rows": s.rejected,
        "duplicates_absorbed": s.duplicates,
        "preview": md_table(s.preview),
    }


def drain_landing_first(log, days, lake: LakeResource, fleet: FleetResource, detection: DetectionResource) -> None:
    """Files waiting in the landing zone (an import, a capture) reach the lake before the days are built.

    Without it, history imported while the daemon is off would miss the
    backfill of its own days. The days being backfilled (``days``) are left to this run.
    """
    days = frozenset(days)
    first_day = dt.date.fromisoformat(start_date())
    downstream = make_update_downstream(detection.settings(fleet.params(), lake.lake.root), first_day, skip_days=days)
    r = drain_landing(lake.lake, time.time_ns() // 1000, fleet=fleet.params(), landing=landing_dir(lake.lake.root),
                      first_day=first_day, downstream=downstream)  # fmt: skip
    if r is not None:
        log.info(
            f"landing zone: {r.landing_files} files ingested first ({r.ingested} readings, {r.rejected} rejected, "
            f"{r.duplicates} duplicates) into {', '.join(sorted(r.per_day)) or 'no day'}"
        )


@dg.multi_asset(
    specs=[
        dg.AssetSpec("readings", description=READINGS_DOC, kinds={"parquet"}, group_name="lake",
                     metadata={"dagster/column_schema": dg.TableSchema(
                         columns=[dg.TableColumn(f.name, str(f.type)) for f in READINGS])},
                     freshness_policy=LIVE),
        dg.AssetSpec("fault_labels", description=LABELS_DOC, kinds={"parquet"}, group_name="lake"),
    ],
    partitions_def=daily_partitions,
    # One run for a whole backfill range: no cold process start per day.
    backfill_policy=dg.BackfillPolicy.single_run(),
    # `readings+` selects readings without fault_labels: both come from one pass of
    # the simulator, but only the selected ones are written
    can_subset=True,
)
def fleet_readings(context: AssetExecutionContext, fleet: FleetResource, lake: LakeResource, detection: DetectionResource):
    tune_malloc()  # whole days in NumPy: big arrays reused from the heap (io.malloc_tuning)
    params = fleet.params()
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    if "readings" in selected:
        drain_landing_first(context.log, days_of(context), lake, fleet, detection)
    if "readings" in selected and _detection_in_run(context) and worker_processes() == 1:
        # the run materializes window_stats and anomalies of these days too: computed in the same pass
        # over each day (io.chain) and handed to the detection step, which reports them
        days = _chain(context, params, lake, detection)
    else:
        # days side by side in worker processes when there are cores to spare (day_processes); each day
        # streamed: memory follows one chunk of sensors
        days = build_readings_days(lake.lake, params, days_of(context), now_us=lambda: time.time_ns() // 1000,
                                   write_labels="fault_labels" in selected, processes=day_processes())  # fmt: skip
    for s in days:
        day = s.day
        context.log.info(f"readings {day}: {s.rows} rows, {s.rejected} rejected, missing {s.missing_rate:.2%}")
        # per partition, so each day of a single-run backfill carries its own figures
        if "readings" in selected:
            context.add_asset_metadata(day_metadata(s), asset_key="readings", partition_key=day.isoformat())
        if "fault_labels" in selected:
            context.add_asset_metadata({"dagster/row_count": s.labels, "simulated": params is not None},
                                       asset_key="fault_labels", partition_key=day.isoformat())  # fmt: skip
    for key in sorted(selected):
        yield dg.MaterializeResult(asset_key=key)


def _detection_in_run(context: AssetExecutionContext) -> bool:
    """Whether this run materializes window_stats and anomalies too (a backfill of the lake). A run made
    without a selection (``dg.materialize(assets)``: None or empty) materializes every asset of its job."""
    selection = context.run.asset_selection
    if not selection:
        selection = context.job_def.asset_layer.selected_asset_keys
    return {"window_stats", "anomalies"} <= {k.to_user_string() for k in selection}


def _chain(context: AssetExecutionContext, params, lake: LakeResource, detection: DetectionResource) -> Iterator[DayStats]:
    """Each day's readings, window_stats and anomalies in one pass (io.chain); the derived tables' metadata
    (made while the next day is built) handed to the run's detection step, the checks of the days that passed them
    in the pass (io.pass_audits; the derived tables' checks over them in memory) to the check steps."""
    settings = detection.settings(params, lake.lake.root)
    handed: dict[dt.date, chain_handoff.HandedDay] = {}
    checked: dict[str, dict] = {"readings": {}, "window_stats": {}, "anomalies": {}}
    write_labels = "fault_labels" in {k.to_user_string() for k in context.selected_asset_keys}

    def hand(c) -> None:  # noqa: ANN001
        ws_meta, anomaly_meta, summary = derived_metadata(lake.lake, c.stats.day, c.out)
        handed[c.stats.day] = chain_handoff.HandedDay(ws_meta, anomaly_meta, summary, c.inputs)
        for table, data in (("window_stats", c.out.window_stats), ("anomalies", c.out.anomalies)):
            files = c.written[table]  # None: another writer committed to the table since the pass wrote it
            checked[table][c.stats.day] = Vouched(passed_in_pass(table, data) if files is not None else None, files or [])

    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for c in build_chain_days(lake.lake, params, days_of(context), settings, now_us=lambda: time.time_ns() // 1000,
                                  write_labels=write_labels):  # fmt: skip
            if pending is not None:
                pending.result()
            pending = pool.submit(hand, c)
            checked["readings"][c.stats.day] = c.audited
            yield c.stats
        if pending is not None:
            pending.result()
    chain_handoff.save(lake.lake, context.run.run_id, handed, checked)
