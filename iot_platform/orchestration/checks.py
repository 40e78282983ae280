"""Asset checks: the audits of each lake table, per partition (or backfill range)."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import dagster as dg
from dagster import AssetCheckExecutionContext

from iot_platform.core.checks import ANOMALIES_CHECKS, WINDOW_STATS_CHECKS
from iot_platform.io.audits import AuditResult, audit_plausible, audit_readings
from iot_platform.orchestration.metadata import days_of
from iot_platform.orchestration.partitions import daily_partitions
from iot_platform.orchestration.resources import LakeResource


def _result(results: list[tuple[str, AuditResult]], severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    bad = [(day, r) for day, r in results if not r.passed]
    meta: dict = {"partitions_checked": len(results), "failing_partitions": len(bad)}
    if bad:
        meta["failing_rows"] = sum(r.n_bad for _, r in bad)
        meta["examples"] = dg.MetadataValue.json({day: r.examples for day, r in bad[:5]})
    return dg.AssetCheckResult(passed=not bad, metadata=meta, severity=severity)


def _readings_check(name: str, description: str):
    @dg.asset_check(asset="readings", name=name, description=description, partitions_def=daily_partitions)
    def check(context: AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        results = []
        for day in days_of(context):
            by_name = {r.name: r for r in audit_readings(lake.lake, day)}
            r = by_name.get(name) or by_name["exists"]
            results.append((str(day), r))
        return _result(results)

    return check


readings_checks = [
    _readings_check("schema", "Columns and types are those of the readings schema."),
    _readings_check("unique_key", "One reading per (sensor_id, ts)."),
    _readings_check("no_null_keys", "sensor_id and ts are never null."),
    _readings_check("ts_in_partition", "Every ts lies inside the partition's UTC day."),
]


@dg.asset_check(
    asset="readings",
    name="plausible",
    partitions_def=daily_partitions,
    description="Values inside the physical valid range, or accounted for by a labelled sensor fault.",
)
def readings_plausible(context: AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    results = [(str(day), audit_plausible(lake.lake, day)) for day in days_of(context)]
    return _result(results, severity=dg.AssetCheckSeverity.WARN)


def _table_check(table: str, name: str, fn):
    @dg.asset_check(asset=table, name=name, description=(fn.__doc__ or name).strip().splitlines()[0],
                    partitions_def=daily_partitions)  # fmt: skip
    def check(context: AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        results = []
        for day in days_of(context):
            r = fn(lake.lake.read(table, [day]))
            examples = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in r.examples.to_pylist()]
            results.append((str(day), AuditResult(name, r.n_bad, examples)))
        return _result(results)

    return check


table_checks = [_table_check("window_stats", n, f) for n, f in WINDOW_STATS_CHECKS.items()] + [
    _table_check("anomalies", n, f) for n, f in ANOMALIES_CHECKS.items()
]

all_checks = [*readings_checks, readings_plausible, *table_checks]
