"""Asset checks: the audits of each lake table, per partition (or backfill range).

One check step per table: the audits of a day run once, in one pass
(``io.audits.audit_readings``, the ``core.checks`` functions over one read of
the partition), and every check of the table reads its figure from that.
Severities are deliberate: ERROR where downstream results would be wrong
(schema, keys, ranges, types), WARN where the data is right but worth a look
(a physically impossible reading no labelled fault explains: a broken sensor).
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import dagster as dg
import pyarrow as pa
from dagster import AssetCheckExecutionContext

from iot_platform.core.checks import ANOMALIES_CHECKS, WINDOW_STATS_CHECKS
from iot_platform.core.schemas import conform
from iot_platform.io.audits import AuditResult, audit_readings_days
from iot_platform.io.day_pool import day_processes
from iot_platform.io.lake import TABLES
from iot_platform.orchestration import chain_handoff
from iot_platform.orchestration.metadata import days_of
from iot_platform.orchestration.partitions import daily_partitions
from iot_platform.orchestration.resources import LakeResource

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN

READINGS_CHECKS = {
    "schema": ("Columns and types are those of the readings schema.", ERROR),
    "unique_key": ("One reading per (sensor_id, ts).", ERROR),
    "no_null_keys": ("sensor_id and ts are never null.", ERROR),
    "ts_in_partition": ("Every ts lies inside the partition's UTC day.", ERROR),
    "plausible": ("Values inside the physical valid range, or accounted for by a labelled sensor fault.", WARN),
}


def _result(asset: str, name: str, results: list[tuple[str, AuditResult]], severity) -> dg.AssetCheckResult:
    bad = [(day, r) for day, r in results if not r.passed]
    meta: dict = {"partitions_checked": len(results), "failing_partitions": len(bad)}
    if bad:
        meta["failing_rows"] = sum(r.n_bad for _, r in bad)
        meta["examples"] = dg.MetadataValue.json({day: r.examples for day, r in bad[:5]})
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=not bad, metadata=meta, severity=severity)


def _doc(fn) -> str:
    return (fn.__doc__ or fn.__name__).strip().splitlines()[0]


# Partitioned checks are a Preview API in 1.13: Dagster warns once per spec made, so all are made here, together.
_SPECS = {
    (asset, name): dg.AssetCheckSpec(name, asset=asset, description=description, partitions_def=daily_partitions)
    for asset, name, description in [
        *(("readings", n, d) for n, (d, _) in READINGS_CHECKS.items()),
        *(("window_stats", n, _doc(f)) for n, f in WINDOW_STATS_CHECKS.items()),
        *(("anomalies", n, _doc(f)) for n, f in ANOMALIES_CHECKS.items()),
    ]
}


@dg.multi_asset_check(
    name="readings_audits",
    specs=[_SPECS["readings", n] for n in READINGS_CHECKS],
    description="The audits of each readings partition, from one scan of the day.",
)
def readings_checks(context: AssetCheckExecutionContext, lake: LakeResource):
    days = days_of(context)
    # clean days this run's readings step audited from the rows it wrote, files unchanged since (chain_handoff)
    handed = chain_handoff.take_checks(lake.lake, context.run.run_id, "readings", days)
    if handed:
        context.log.info(f"{len(handed)} of {len(days)} days audited by this run's readings step, from the rows it wrote")
    # the others read back, side by side in worker processes (a backfill range)
    read_back = dict(audit_readings_days(lake.lake, [d for d in days if d not in handed], day_processes()))
    per_day = [(str(day), handed[day] if day in handed else read_back[day]) for day in days]
    for name, (_, severity) in READINGS_CHECKS.items():
        yield _result("readings", name, [(day, audits[name]) for day, audits in per_day], severity)


def check_table(checks: dict, data: pa.Table) -> dict[str, AuditResult]:
    """Every check of a table over one day's rows."""
    results = {}
    for name, fn in checks.items():
        r = fn(data)
        examples = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in r.examples.to_pylist()]
        results[name] = AuditResult(name, r.n_bad, examples)
    return results


def passed_in_pass(table: str, data: pa.Table) -> dict[str, AuditResult] | None:
    """The checks of ``table`` over a day's rows as the pass wrote them: their results if all passed, else None
    (the check step reads the files back, for the examples as they are stored)."""
    results = check_table(TABLE_CHECKS[table], conform(data, TABLES[table]))
    return results if all(r.passed for r in results.values()) else None


def _table_checks(table: str, checks: dict, severities: dict):
    @dg.multi_asset_check(
        name=f"{table}_audits",
        specs=[_SPECS[table, n] for n in checks],
        description=f"The audits of each {table} partition, over one read of the day.",
    )
    def _checks(context: AssetCheckExecutionContext, lake: LakeResource):
        days = days_of(context)
        # days whose checks passed in this run's readings step's pass, files unchanged since (chain_handoff)
        handed = chain_handoff.take_checks(lake.lake, context.run.run_id, table, days)
        if handed:
            context.log.info(f"{len(handed)} of {len(days)} days checked in this run's readings step, over the rows it wrote")
        results: dict[str, list] = {n: [] for n in checks}
        for day in days:
            # else once, for every check of the table
            got = handed[day] if day in handed else check_table(checks, lake.lake.read(table, [day]))
            for name in checks:
                results[name].append((str(day), got[name]))
        for name, per_day in results.items():
            yield _result(table, name, per_day, severities.get(name, ERROR))

    return _checks


window_stats_checks = _table_checks("window_stats", WINDOW_STATS_CHECKS, {})
anomalies_checks = _table_checks("anomalies", ANOMALIES_CHECKS, {})
TABLE_CHECKS = {"window_stats": WINDOW_STATS_CHECKS, "anomalies": ANOMALIES_CHECKS}

all_checks = [readings_checks, window_stats_checks, anomalies_checks]
