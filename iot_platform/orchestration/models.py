"""Dagster wiring of the SQL models in ``dbt_like_sql/``: an asset per model, a check per data test.

The lineage is read from the models themselves: a model's ``ref()`` calls are
edges to other models and its ``source('lake', t)`` calls are edges to the lake
asset ``t`` (``readings``, ``window_stats``, ``anomalies``, ``fault_labels``), so
the UI shows ``readings -> window_stats -> anomalies -> models`` with no list
kept by hand.

All models are one ``multi_asset`` (``warehouse_models``) that can run any
subset: a run builds the selected models, in dependency order, into one new
version of the warehouse file and swaps it in at once
(:func:`iot_platform.io.warehouse.refresh`). Models are not partitioned: views
read the whole lake at query time, tables are rebuilt from the compact lake
tables in seconds.

Both definitions need a resource ``lake`` with a ``data_dir`` attribute (the
data root); ``iot_platform.orchestration.resources.LakeResource`` is that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa

from iot_platform.core.sqlmodels import DataTest, Model, Project, Relation, load_project
from iot_platform.io.warehouse import default_project_dir, refresh, run_tests, warehouse_path

GROUP = "warehouse"
_PREVIEW_ROWS = 5


def model_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(name)


def relation_key(relation: Relation) -> dg.AssetKey:
    """The asset a ``ref()``/``source()`` points at: the model, or the lake table's asset."""
    return dg.AssetKey(relation.name)


def _markdown(table: pa.Table) -> str:
    def cell(v: object) -> str:
        return "NULL" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(table.column_names) + " |", "|" + "---|" * table.num_columns]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in table.to_pylist()]
    return "\n".join(lines)


def _description(model: Model) -> str:
    return "\n\n".join(p for p in (model.description, model.header) if p)


def _spec(model: Model) -> dg.AssetSpec:
    documented = dg.TableSchema(columns=[dg.TableColumn(c.name, "?", c.description) for c in model.columns])
    return dg.AssetSpec(
        key=model_key(model.name),
        deps=[relation_key(r) for r in model.relations],
        description=_description(model),
        group_name=GROUP,
        kinds={"duckdb", "sql"},
        code_version=hashlib.sha256(model.text.encode()).hexdigest()[:16],
        metadata={
            "materialized": model.materialized,
            "path": dg.MetadataValue.path(str(model.path)),
            "sql": dg.MetadataValue.md(f"```sql\n{model.text}\n```"),
            **({"dagster/column_schema": documented} if model.columns else {}),
        },
    )


def build_model_assets(project_dir: Path | None = None) -> list[dg.AssetsDefinition]:
    """One asset per model of the SQL project at ``project_dir`` (default ``dbt_like_sql/``)."""
    project = load_project(project_dir or default_project_dir())
    by_key = {model_key(name): name for name in project.models}

    @dg.multi_asset(
        name="warehouse_models",
        specs=[_spec(m) for m in project.models.values()],
        can_subset=True,
        required_resource_keys={"lake"},
        description="Builds the selected SQL models into the DuckDB warehouse, all at once or not at all.",
    )
    # `context` is left unannotated: with postponed annotations Dagster sees the string
    # "AssetExecutionContext" and refuses it. It is an AssetExecutionContext.
    def warehouse_models(context) -> Iterator[dg.MaterializeResult]:  # noqa: ANN001
        data_dir = context.resources.lake.data_dir
        selected = [by_key[k] for k in context.selected_asset_keys]
        built = refresh(project, data_dir, selected, preview_rows=_PREVIEW_ROWS)
        path = warehouse_path(data_dir)
        for b in built:
            model = project.models[b.name]
            described = {c.name: c.description for c in model.columns}
            metadata: dict[str, object] = {
                "materialized": b.materialized,
                "warehouse": dg.MetadataValue.path(str(path)),
                "dagster/table_name": f"main.{b.name}",
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, type_, described.get(name)) for name, type_ in b.columns]
                ),
            }
            if b.row_count is not None:
                metadata["dagster/row_count"] = b.row_count
            if b.preview is not None:
                metadata["preview"] = dg.MetadataValue.md(_markdown(b.preview))
            yield dg.MaterializeResult(asset_key=model_key(b.name), metadata=metadata)

    return [warehouse_models]


def _check_key(test: DataTest) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(model_key(test.model), test.name)


def build_model_checks(project_dir: Path | None = None) -> list[dg.AssetChecksDefinition]:
    """One asset check per data test of schema.yml: it fails with the count and a sample of the bad rows."""
    project: Project = load_project(project_dir or default_project_dir())
    tests = project.tests
    if not tests:
        return []
    specs = [
        dg.AssetCheckSpec(
            name=t.name,
            asset=model_key(t.model),
            description=t.description,
            additional_deps=[relation_key(t.to)] if t.to is not None and t.to.name != t.model else None,
            metadata={"test": t.kind, "severity": t.severity},
        )
        for t in tests
    ]

    @dg.multi_asset_check(
        name="warehouse_model_tests",
        specs=specs,
        can_subset=True,
        required_resource_keys={"lake"},
        description="Runs the selected data tests of dbt_like_sql/models/schema.yml against the warehouse.",
    )
    def warehouse_model_tests(context) -> Iterator[dg.AssetCheckResult]:  # noqa: ANN001 (an AssetCheckExecutionContext)
        selected = [t for t in tests if _check_key(t) in set(context.selected_asset_check_keys)]
        for outcome in run_tests(project, context.resources.lake.data_dir, selected, examples=_PREVIEW_ROWS):
            t = outcome.test
            metadata: dict[str, object] = {
                "failing_rows": outcome.failing_rows,
                "sql": dg.MetadataValue.md(f"```sql\n{outcome.sql}\n```"),
            }
            if outcome.examples is not None:
                metadata["examples"] = dg.MetadataValue.md(_markdown(outcome.examples))
            if outcome.error is not None:
                metadata["error"] = outcome.error
            yield dg.AssetCheckResult(
                asset_key=model_key(t.model),
                check_name=t.name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.WARN if t.severity == "warn" else dg.AssetCheckSeverity.ERROR,
                metadata=metadata,
                description=(
                    outcome.error
                    if outcome.error
                    else f"{outcome.failing_rows} row(s) fail: {t.description}" if outcome.failing_rows else None
                ),
            )

    return [warehouse_model_tests]
