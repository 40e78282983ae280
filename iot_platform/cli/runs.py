"""Running assets from the command line in the UI's Dagster instance (``backfill``, ``materialize``).

The run executes in this process, recorded in the Dagster home that
``iot-platform ui`` uses, so it appears under Runs and on each asset's
partitions in the UI while it runs and afterwards. The lake assets have a
single-run backfill policy: a range of days is one run, the way the UI's own
backfill of them runs.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg
import pyarrow.parquet as pq

from iot_platform.cli import CliError
from iot_platform.cli.dagster_home import open_instance

# Dagster's run tags for a run over a range of partitions (what a single-run backfill sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
INVOCATION_TAG = "iot/invocation"  # finds a run whose id Dagster chose (execute_job)
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Plan:
    """What to run: asset keys, and the partition range (None for unpartitioned assets)."""

    keys: tuple[dg.AssetKey, ...]
    first: str | None = None
    last: str | None = None

    @property
    def partitions(self) -> list[str]:
        if self.first is None or self.last is None:
            return []
        start, end = dt.date.fromisoformat(self.first), dt.date.fromisoformat(self.last)
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


@dataclass
class Outcome:
    run_id: str
    success: bool
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)  # per asset, summed over partitions
    materialized: int = 0
    failure: str = ""


def valid_range_text(partitions_def: dg.TimeWindowPartitionsDefinition) -> str:
    return f"{partitions_def.get_first_partition_key()} to {partitions_def.get_last_partition_key()}"


def check_partition_key(key: str, partitions_def: dg.TimeWindowPartitionsDefinition) -> str:
    """``key`` if it is a day of ``partitions_def``; else a CliError naming it and the valid range."""
    first, last = partitions_def.get_first_partition_key(), partitions_def.get_last_partition_key()
    try:
        ok = bool(_DAY_RE.fullmatch(key)) and dt.date.fromisoformat(key).isoformat() == key
    except ValueError:
        ok = False
    if not ok:
        raise CliError(f"partition key {key!r} is not a day; expected YYYY-MM-DD from {first} to {last}")
    if not first <= key <= last:  # ISO dates order as strings
        raise CliError(f"partition key {key!r} is outside the partitions; expected a day from {first} to {last}")
    return key


def resolve_selection(defs: dg.Definitions, select: str) -> tuple[dg.AssetKey, ...]:
    """Asset keys for a Dagster selection string (``group:lake``, ``anomalies``, ``+anomalies``)."""
    graph = defs.resolve_asset_graph()
    try:
        # the assets computed in one step with a selected one (window_stats with anomalies) come along
        keys = dg.AssetSelection.from_string(select).required_multi_asset_neighbors().resolve(graph)
    except Exception as exc:  # Dagster raises several types for a bad selection
        known = ", ".join(sorted(k.to_user_string() for k in graph.materializable_asset_keys))
        raise CliError(f"--select {select!r} selects nothing valid ({type(exc).__name__}); assets are: {known}") from None
    keys = {k for k in keys if k in graph.materializable_asset_keys}
    if not keys:
        raise CliError(f"--select {select!r} selects no asset; try 'group:lake', 'group:warehouse' or an asset name")
    return tuple(sorted(keys, key=lambda k: k.to_user_string()))


def partitions_of(defs: dg.Definitions, keys: Sequence[dg.AssetKey]) -> dg.TimeWindowPartitionsDefinition | None:
    """The selection's daily partitions, or None if it is unpartitioned; mixing both is an error."""
    graph = defs.resolve_asset_graph()
    by_key = {k: graph.get(k).partitions_def for k in keys}
    partitioned = sorted(k.to_user_string() for k, p in by_key.items() if p is not None)
    plain = sorted(k.to_user_string() for k, p in by_key.items() if p is None)
    if partitioned and plain:
        raise CliError(
            f"the selection mixes daily-partitioned assets ({', '.join(partitioned)}) with unpartitioned ones "
            f"({', '.join(plain)}); run them separately"
        )
    defs_found = {p for p in by_key.values() if p is not None}
    if len(defs_found) > 1:
        raise CliError(f"the selected assets ({', '.join(partitioned)}) have different partitions; run them separately")
    return next(iter(defs_found), None)  # type: ignore[return-value]


def lake_rows(data_root: str, table: str, day: str) -> int | None:
    """Rows of ``table`` on ``day`` in the lake (from the Parquet footers), None if it is not a lake table."""
    from iot_platform.io.lake import TABLES, open_lake
    from iot_platform.io.parquet_files import parquet_source

    if table not in TABLES:
        return None
    lake = open_lake(data_root)
    return sum(pq.ParquetFile(parquet_source(f)).metadata.num_rows for f in lake.files(table, day))


def execute(
    defs: dg.Definitions,
    plan: Plan,
    instance: dg.DagsterInstance,
    *,
    tags: dict[str, str],
    data_root: str,
    echo: Callable[[str], None] = print,
    debug: bool = False,
    workers: int = 1,
) -> Outcome:
    """Run ``plan`` in ``instance``; echo one line per (asset, partition) as it is materialized.

    ``workers=1``: the assets' own job, in this process (one step per asset). More:
    the ``backfill_days`` job on Dagster's multiprocess executor with ``max_concurrent``
    = workers (readings of different days side by side, detection day after day); from 3
    workers ``backfill_days_in_waves`` (detection of past days side by side too).
    """
    run_tags = dict(tags)
    # Dagster's console logger would print every event; the lines below say what matters.
    loggers = {"console": {"config": {"log_level": "DEBUG" if debug else "WARNING"}}}
    if workers == 1:
        job = defs.resolve_implicit_job_def_def_for_assets(list(plan.keys))
        if job is None:  # pragma: no cover - every materializable selection has an implicit job
            raise CliError("Dagster found no job for the selection")
        run_id = str(uuid.uuid4())  # chosen here so that progress can follow the run while it executes
        partition_key = None
        if plan.first is not None and plan.first == plan.last:
            partition_key = plan.first
        elif plan.first is not None:
            run_tags.update({RANGE_START_TAG: plan.first, RANGE_END_TAG: plan.last})

        def launch():
            return job.execute_in_process(
                run_config={"loggers": loggers}, instance=instance, partition_key=partition_key,
                asset_selection=list(plan.keys), run_id=run_id, tags=run_tags, raise_on_error=False,
            )  # fmt: skip

        def find_run_id() -> str | None:
            return run_id
    else:
        from iot_platform.orchestration.backfill import reconstructable_backfill_job

        # execute_job picks the run id: the run is found by a tag of its own
        token = str(uuid.uuid4())
        run_tags.update({INVOCATION_TAG: token, "iot/backfill_range": f"{plan.first}..{plan.last}"})
        run_config = {
            "ops": {"plan_backfill": {"config": {"start": plan.first, "end": plan.last, "chunks": workers}}},
            "execution": {"config": {"max_concurrent": workers}},
            "loggers": loggers,
        }

        def launch():
            return dg.execute_job(reconstructable_backfill_job(workers), instance, run_config=run_config,
                                  tags=run_tags, raise_on_error=False)  # fmt: skip

        def find_run_id() -> str | None:
            found = instance.get_run_ids(filters=dg.RunsFilter(tags={INVOCATION_TAG: token}), limit=1)
            return found[0] if found else None

    outcome = Outcome(run_id="", success=False, seconds=0.0)
    seen: set[tuple[str, str | None]] = set()
    done = threading.Event()

    def report_new() -> None:
        if not outcome.run_id:
            outcome.run_id = find_run_id() or ""
            if not outcome.run_id:
                return
            echo(f"run {outcome.run_id} in Dagster home {instance.root_directory}")
        for record in instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            event = record.dagster_event
            if event is None or event.asset_key is None:
                continue
            name, partition = event.asset_key.to_user_string(), event.partition
            if (name, partition) in seen:
                continue
            seen.add((name, partition))
            rows = lake_rows(data_root, name, partition) if partition else None
            if rows is None:  # not a lake table (a warehouse model): the count the asset reported
                entry = event.step_materialization_data.materialization.metadata.get("dagster/row_count")
                rows = entry.value if entry is not None and isinstance(entry.value, int) else None
            if rows is not None:
                outcome.rows[name] = outcome.rows.get(name, 0) + rows
            outcome.materialized += 1
            where = partition or "(unpartitioned)"
            echo(f"  {where}  {name:<24} {'' if rows is None else f'{rows:>10,} rows'}".rstrip())

    def follow() -> None:
        while not done.wait(0.5):
            report_new()

    follower = threading.Thread(target=follow, name="iot-progress", daemon=True)
    started = time.monotonic()
    if workers == 1:
        report_new()  # the run id is known before the run starts
    follower.start()
    try:
        result = launch()
    finally:
        done.set()
        follower.join()
    outcome.seconds = time.monotonic() - started
    report_new()
    outcome.success = result.success
    if not result.success:
        failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        outcome.failure = "; ".join(
            f"{e.step_key}: {_root_cause(e.step_failure_data.error)}"  # type: ignore[union-attr]
            for e in failures
            if e.step_failure_data and e.step_failure_data.error
        ) or "the run failed; see it in the UI"
    return outcome


def _root_cause(error) -> str:
    """The last line of the innermost error: the step's own exception, not Dagster's wrapper of it."""
    while error.cause is not None and "DagsterExecutionStepExecutionError" in (error.cls_name or ""):
        error = error.cause
    return error.message.strip().splitlines()[-1]


def summary_line(verb: str, plan: Plan, outcome: Outcome) -> str:
    parts = plan.partitions
    span = f"{len(parts)} partition{'s' * (len(parts) != 1)} ({parts[0]}..{parts[-1]})" if parts else "unpartitioned"
    rows = ", ".join(f"{name} {n:,}" for name, n in sorted(outcome.rows.items())) or "-"
    state = "done" if outcome.success else "FAILED"
    assets = f"{len(plan.keys)} asset{'s' * (len(plan.keys) != 1)}"
    return f"{verb} {state}: {span}, {assets}, rows: {rows}; {outcome.seconds:.1f} s; run {outcome.run_id}"


def run_and_report(command: str, defs: dg.Definitions, plan: Plan, home, *, data_root: str, debug: bool, workers: int = 1) -> int:
    """Execute ``plan`` in the Dagster home ``home``, echo its progress, end with the summary line.

    Returns the exit code: 0 when the run succeeded, 1 when it failed.
    """
    with open_instance(home) as instance:
        outcome = execute(
            defs, plan, instance, tags={"iot/started_by": f"iot-platform {command}"}, data_root=data_root,
            echo=lambda line: print(line, flush=True), debug=debug, workers=workers,
        )  # fmt: skip
    if not outcome.success:
        print(f"failed: {outcome.failure}", flush=True)
    print(summary_line(command, plan, outcome), flush=True)
    return 0 if outcome.success else 1
