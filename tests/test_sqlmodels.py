"""The SQL project parser: strict macros, dependency order, schema.yml and the audit queries."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from iot_platform.core.sqlmodels import (
    DataTest,
    ProjectError,
    Relation,
    build_project,
    load_project,
    parse_model,
    quote_ident,
)
from iot_platform.io.warehouse import default_project_dir

HEADER = "-- One row per thing.\n"
SOURCES = {"sources": [{"name": "lake", "tables": [{"name": "anomalies"}, {"name": "window_stats"}]}]}


def names(r: Relation) -> str:
    return f"<{r.kind}:{r.source + '.' if r.source else ''}{r.name}>"


def project(models: dict[str, str], schema: dict | None = None):
    texts = {n: (Path(f"models/{n}.sql"), t) for n, t in models.items()}
    return build_project(Path("."), texts, {**SOURCES, **(schema or {})}, Path("models/schema.yml"))


# -- rendering -------------------------------------------------------------------------
def test_render_replaces_the_three_macros_and_keeps_lines():
    text = HEADER + (
        "{{ config(materialized='table') }}\n"
        "SELECT *\n"
        "FROM {{ ref('a') }} JOIN {{source(\"lake\",'anomalies')}} USING (x)\n"
        "WHERE {{ ref('a') }}.y > 1\n"
    )
    m = parse_model("b", text, Path("b.sql"))
    assert m.materialized == "table"
    assert m.relations == (Relation("ref", "a"), Relation("source", "anomalies", "lake"))
    assert m.refs == ("a",)
    assert m.render(names) == HEADER + (
        "\nSELECT *\nFROM <ref:a> JOIN <source:lake.anomalies> USING (x)\nWHERE <ref:a>.y > 1\n"
    )
    assert m.header == "One row per thing."


def test_default_materialization_is_view():
    assert parse_model("a", HEADER + "SELECT 1", Path("a.sql")).materialized == "view"


def test_struct_literals_with_closing_braces_are_plain_sql():
    text = HEADER + "SELECT {'a': {'b': 1}} AS s"
    assert parse_model("a", text, Path("a.sql")).render(names) == text


@pytest.mark.parametrize(
    "body, message",
    [
        ("SELECT {{ var('x') }}", "m.sql:3: unknown macro 'var' in {{ var('x') }}; expected ref('model')"),
        ("SELECT {{ 1 + 1 }}", "m.sql:3: {{ 1 + 1 }} is not a macro call"),
        ("SELECT {{ ref( }}", "m.sql:3: cannot parse {{ ref( }}"),
        ("SELECT {{ ref(name) }}", "m.sql:3: ref() takes string literals; got name"),
        ("SELECT {{ ref('a', 'b') }}", "m.sql:3: ref() takes one model name"),
        ("SELECT {{ source('anomalies') }}", "m.sql:3: source() takes a source and a table"),
        ("{{ config(materialized='incremental') }}", "m.sql:3: materialized='incremental' is not supported; expected one of view, table"),
        ("{{ config(schema='x') }}", "m.sql:3: config() takes only materialized="),
        ("{{ config() }}\n{{ config() }}", "m.sql:3: config() takes only"),
        ("{{ config(materialized='view') }}\n{{ config(materialized='table') }}", "m.sql:4: config() appears more than once"),
        ("SELECT 1 {% if x %}", "m.sql:3: jinja statements and comments ({% %}, {# #}) are not supported"),
        ("SELECT 1 {# note #}", "m.sql:3: jinja statements and comments"),
        ("SELECT {{ ref('a') ", "m.sql:3: '{{' without a closing '}}'"),
    ],
)
def test_anything_but_the_three_macros_is_an_error_naming_file_and_line(body, message):
    with pytest.raises(ProjectError) as err:
        parse_model("m", HEADER + "\n" + body, Path("m.sql"))
    assert str(err.value).startswith(message)


def test_a_model_needs_a_header_comment():
    with pytest.raises(ProjectError, match=r"^m.sql:2: a model starts with a header comment"):
        parse_model("m", "\nSELECT 1", Path("m.sql"))
    with pytest.raises(ProjectError, match="invalid; expected lower_snake_case"):
        parse_model("Bad-Name", HEADER + "SELECT 1", Path("Bad-Name.sql"))


# -- the project: references and order --------------------------------------------------
def test_models_come_in_dependency_order():
    p = project(
        {
            "c": HEADER + "SELECT * FROM {{ ref('b') }} JOIN {{ ref('a') }} USING (k)",
            "a": HEADER + "SELECT * FROM {{ source('lake', 'anomalies') }}",
            "b": HEADER + "SELECT * FROM {{ ref('a') }}",
            "d": HEADER + "SELECT 1",
        }
    )
    assert list(p.models) == ["a", "b", "c", "d"]
    assert [m.name for m in p.select(["c", "a"])] == ["a", "c"]
    with pytest.raises(ProjectError, match="unknown model.*nope; expected one of a, b, c, d"):
        p.select(["nope"])


def test_a_ref_cycle_is_reported_with_its_path():
    with pytest.raises(ProjectError, match=r"ref\(\) cycle: a -> b -> c -> a"):
        project(
            {
                "a": HEADER + "SELECT * FROM {{ ref('b') }}",
                "b": HEADER + "SELECT * FROM {{ ref('c') }}",
                "c": HEADER + "SELECT * FROM {{ ref('a') }}",
            }
        )


def test_unknown_refs_and_undeclared_sources_name_file_and_line():
    with pytest.raises(ProjectError, match=r"^models/a.sql:3: ref\('nope'\) names no model; expected one of a$"):
        project({"a": HEADER + "\nSELECT * FROM {{ ref('nope') }}"})
    with pytest.raises(ProjectError, match=r"^models/a.sql:2: source\('lake', 'readings'\) is not declared .* declared: lake.anomalies, lake.window_stats$"):
        project({"a": HEADER + "SELECT * FROM {{ source('lake', 'readings') }}"})
    with pytest.raises(ProjectError, match="cannot ref.. itself"):
        project({"a": HEADER + "SELECT * FROM {{ ref('a') }}"})


# -- schema.yml ---------------------------------------------------------------------------
def test_schema_attaches_descriptions_columns_and_tests():
    schema = yaml.safe_load(
        """
models:
  - name: a
    description: Things.
    tests:
      - unique: {columns: [k, day]}
    columns:
      - name: k
        description: The key.
        tests:
          - not_null
          - accepted_values: {values: [x, y], config: {severity: warn}}
          - relationships: {to: "ref('b')", field: k2}
      - name: day
        data_tests:
          - not_null: {name: day_is_set}
  - name: b
"""
    )
    p = project({"a": HEADER + "SELECT 1", "b": HEADER + "SELECT 1"}, schema)
    a = p.models["a"]
    assert a.description == "Things."
    assert [(c.name, c.description) for c in a.columns] == [("k", "The key."), ("day", "")]
    assert [(t.name, t.kind, t.columns, t.severity) for t in a.tests] == [
        ("unique_k_day", "unique", ("k", "day"), "error"),
        ("not_null_k", "not_null", ("k",), "error"),
        ("accepted_values_k", "accepted_values", ("k",), "warn"),
        ("relationships_k__b", "relationships", ("k",), "error"),
        ("day_is_set", "not_null", ("day",), "error"),
    ]
    assert a.tests[2].values == ("x", "y")
    assert a.tests[3].to == Relation("ref", "b") and a.tests[3].field == "k2"
    assert [t.name for t in p.tests] == [t.name for t in a.tests]


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"models": [{"name": "a", "colums": []}]}, "models[0]: unknown key 'colums'; expected one of name, description"),
        ({"models": [{"name": "zz"}]}, "models[zz] has no file"),
        ({"models": [{"name": "a", "tests": ["unique"]}]}, "a model-level unique test needs columns"),
        ({"models": [{"name": "a", "tests": [{"accepted_values": {"values": [1]}}]}]}, "accepted_values is a column test"),
        ({"models": [{"name": "a", "columns": [{"name": "k", "tests": ["dbt_utils.expression"]}]}]}, "unknown test 'dbt_utils.expression'"),
        ({"models": [{"name": "a", "columns": [{"name": "k", "tests": [{"accepted_values": {"values": [True, False]}}]}]}]}, "quote words such as 'yes'"),
        ({"models": [{"name": "a", "columns": [{"name": "k", "tests": [{"relationships": {"to": "ref('zz')", "field": "k"}}]}]}]}, r"relationships_k__zz: ref('zz') names no model"),
        ({"models": [{"name": "a", "columns": [{"name": "k", "tests": [{"not_null": {"config": {"severity": "fatal"}}}]}]}]}, "severity 'fatal' is invalid; expected one of error, warn"),
        ({"models": [{"name": "a", "columns": [{"name": "k", "tests": ["not_null", "not_null"]}]}]}, "two tests are named 'not_null_k'"),
        ({"models": [{"name": "a", "config": {"materialized": "table"}}]}, "set config in the model file"),
        ({"version": 1}, "version 1 is not supported; expected 2"),
    ],
)
def test_schema_mistakes_are_reported(schema, message):
    with pytest.raises(ProjectError) as err:
        project({"a": HEADER + "SELECT 1"}, schema)
    assert message in str(err.value)
    assert str(err.value).startswith("models/schema.yml")


def test_load_project_reads_files_and_reports_yaml_errors_with_line(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.sql").write_text(HEADER + "SELECT 1 AS k")
    (tmp_path / "models" / "schema.yml").write_text("models:\n  - name: a\n    description: x: y\n")
    with pytest.raises(ProjectError, match=r"schema.yml:3: invalid YAML"):
        load_project(tmp_path)
    (tmp_path / "models" / "schema.yml").write_text("models:\n  - name: a\n    description: ok\n")
    p = load_project(tmp_path)
    assert list(p.models) == ["a"] and p.models["a"].description == "ok"
    with pytest.raises(ProjectError, match="no such directory"):
        load_project(tmp_path / "missing")


# -- audit queries -------------------------------------------------------------------------
def test_audit_queries_select_the_bad_rows_with_bound_values():
    q = quote_ident
    rel = lambda r: q(r.name)  # noqa: E731
    assert DataTest("m", "not_null", ("a", "b")).sql(rel) == ('SELECT * FROM "m" AS m WHERE "a" IS NULL OR "b" IS NULL', [])
    sql, params = DataTest("m", "accepted_values", ("s",), values=("x", "it's")).sql(rel)
    assert sql == 'SELECT * FROM "m" AS m WHERE "s" IS NOT NULL AND NOT list_contains(?, "s")'
    assert params == [["x", "it's"]]  # bound, never formatted into the SQL
    sql, _ = DataTest("m", "relationships", ("k",), to=Relation("source", "anomalies", "lake"), field="anomaly_id").sql(rel)
    assert 'FROM "anomalies" AS parent WHERE parent."anomaly_id" = child."k"' in sql
    sql, _ = DataTest("m", "unique", ("a", "date")).sql(rel)
    assert sql.startswith('SELECT "a", "date", count(*) AS n_rows FROM "m" AS m') and "HAVING count(*) > 1" in sql
    sql, _ = DataTest("m", "not_null", ("a",), where="date >= DATE '2024-01-01'").sql(rel)
    assert sql == 'SELECT * FROM (SELECT * FROM "m" WHERE date >= DATE \'2024-01-01\') AS m WHERE "a" IS NULL'
    assert quote_ident('we"ird') == '"we""ird"'


# -- the shipped project --------------------------------------------------------------------
def test_the_shipped_project_loads_with_its_lineage():
    p = load_project(default_project_dir())
    order = list(p.models)
    assert {m.name: m.materialized for m in p.models.values()} == {
        "window_tiles": "view", "sensor_hourly": "view", "fleet_hourly": "view", "sensor_readings_hourly": "view",
        "sensor_status": "view", "sensor_health_daily": "table", "anomaly_summary_daily": "table",
        "open_alerts": "table", "detection_quality_daily": "table", "alarms": "view",
    }
    for before, after in [
        ("window_tiles", "sensor_hourly"),
        ("sensor_hourly", "fleet_hourly"),
        ("window_tiles", "sensor_health_daily"),
        ("sensor_health_daily", "open_alerts"),
        ("open_alerts", "sensor_status"),
    ]:
        assert order.index(before) < order.index(after)
    deps = {m.name: (sorted(m.refs), sorted(s.name for s in m.sources)) for m in p.models.values()}
    assert deps == {
        "window_tiles": ([], ["window_stats"]),
        "sensor_hourly": (["window_tiles"], []),
        "fleet_hourly": (["sensor_hourly"], []),
        "sensor_health_daily": (["window_tiles"], ["anomalies", "window_stats"]),
        "anomaly_summary_daily": ([], ["anomalies"]),
        "open_alerts": (["sensor_health_daily"], ["anomalies"]),
        "sensor_status": (["open_alerts", "sensor_health_daily"], []),
        "sensor_readings_hourly": ([], ["readings"]),
        "detection_quality_daily": ([], ["anomalies", "fault_labels"]),
        "alarms": ([], ["alarm_deliveries", "alarm_log"]),
    }
    assert all(m.header and m.description for m in p.models.values())
    # tests on views over the lake audit recent days only: a full scan at every refresh is too slow
    assert {t.model for t in p.tests if t.where} == {"sensor_hourly", "fleet_hourly"}
