"""The SQL project under ``dbt_like_sql/``: models, their lineage and their data tests.

A model is one ``models/<name>.sql`` file holding one SELECT, opened by a
header comment that says what one row is. Three dbt macros, and only these,
may appear in ``{{ }}``:

* ``{{ ref('model') }}``: another model (a lineage edge between models);
* ``{{ source('lake', 'table') }}``: a lake table (an edge to a lake asset);
* ``{{ config(materialized='view'|'table') }}``: how the model is built.

Anything else in ``{{ }}``, and any ``{% %}`` or ``{# #}``, is an error naming
the file and line: the renderer is a strict parser, not a template engine.

``models/schema.yml`` documents the models (descriptions, columns) and declares
generic data tests (``unique``, ``not_null``, ``accepted_values``,
``relationships``) and the lake sources. A data test is an audit: a query that
returns the bad rows, so zero rows means it passes.

This module is pure: it reads the project's text files and returns plain
objects; executing anything is the warehouse's job (``iot_platform.io.warehouse``).

>>> m = parse_model("daily", "-- One row per day.\\nSELECT * FROM {{ ref('x') }}", Path("daily.sql"))
>>> m.render(lambda r: f'"{r.name}"').splitlines()[1]
'SELECT * FROM "x"'
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

MATERIALIZATIONS: tuple[str, ...] = ("view", "table")
TEST_KINDS: tuple[str, ...] = ("unique", "not_null", "accepted_values", "relationships")
SEVERITIES: tuple[str, ...] = ("error", "warn")
SCHEMA_FILE = "schema.yml"
MODELS_DIR = "models"

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_CHECK_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_MACRO = re.compile(r"\{\{(.*?)\}\}", re.S)
_JINJA_BLOCK = re.compile(r"\{[%#]")


class ProjectError(ValueError):
    """A mistake in the SQL project; the message names the file (and line or entry)."""


@dataclasses.dataclass(frozen=True)
class Relation:
    """What a ``ref()`` or ``source()`` points at."""

    kind: str  # "ref" or "source"
    name: str  # the model, or the source's table
    source: str | None = None  # the source's name, for kind == "source"

    def __str__(self) -> str:
        return f"ref('{self.name}')" if self.kind == "ref" else f"source('{self.source}', '{self.name}')"


@dataclasses.dataclass(frozen=True)
class _Macro:
    relation: Relation | None  # None for config()
    materialized: str | None
    start: int
    end: int
    line: int


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    description: str = ""


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclasses.dataclass(frozen=True)
class DataTest:
    """A generic test on a model; :meth:`sql` selects the rows that break it."""

    model: str
    kind: str
    columns: tuple[str, ...]
    values: tuple[Any, ...] = ()  # accepted_values
    to: Relation | None = None  # relationships: the parent relation ...
    field: str | None = None  # ... and its key column
    severity: str = "error"
    explicit_name: str | None = None
    where: str | None = None  # dbt's test config: audit only the rows matching this SQL predicate

    @property
    def name(self) -> str:
        if self.explicit_name:
            return self.explicit_name
        base = f"{self.kind}_{'_'.join(self.columns)}"
        if self.kind == "relationships" and self.to is not None:
            base += f"__{self.to.name}"
        return base

    @property
    def description(self) -> str:
        cols = ", ".join(self.columns)
        if self.kind == "unique":
            return f"No two rows of {self.model} share ({cols})."
        if self.kind == "not_null":
            return f"{cols} of {self.model} is never null."
        if self.kind == "accepted_values":
            return f"{cols} of {self.model} is one of {', '.join(map(str, self.values))}."
        return f"Every {cols} of {self.model} exists as {self.field} in {self.to}."

    def sql(self, relation_name: Callable[[Relation], str]) -> tuple[str, list[Any]]:
        """The audit query (returns the failing rows) and its bound parameters."""
        rel = relation_name(Relation("ref", self.model))
        if self.where:
            # project code from schema.yml (like a model's SQL), not a value: it cannot be bound
            rel = f"(SELECT * FROM {rel} WHERE {self.where})"
        cols = [quote_ident(c) for c in self.columns]
        if self.kind == "not_null":
            return f"SELECT * FROM {rel} AS m WHERE " + " OR ".join(f"{c} IS NULL" for c in cols), []
        if self.kind == "unique":
            keys = ", ".join(cols)
            all_null = " AND ".join(f"{c} IS NULL" for c in cols)
            return (
                f"SELECT {keys}, count(*) AS n_rows FROM {rel} AS m WHERE NOT ({all_null}) "
                f"GROUP BY {keys} HAVING count(*) > 1 ORDER BY n_rows DESC, {keys}",
                [],
            )
        if self.kind == "accepted_values":
            (c,) = cols
            return f"SELECT * FROM {rel} AS m WHERE {c} IS NOT NULL AND NOT list_contains(?, {c})", [list(self.values)]
        assert self.to is not None and self.field is not None
        (c,) = cols
        parent = relation_name(self.to)
        return (
            f"SELECT child.* FROM {rel} AS child WHERE child.{c} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {parent} AS parent WHERE parent.{quote_ident(self.field)} = child.{c})",
            [],
        )


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    path: Path
    text: str
    header: str  # the leading comment: what one row is, grain, time column
    materialized: str
    relations: tuple[Relation, ...]  # distinct, in order of first appearance
    description: str = ""
    columns: tuple[Column, ...] = ()
    tests: tuple[DataTest, ...] = ()
    _macros: tuple[_Macro, ...] = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.relations if r.kind == "ref")

    @property
    def sources(self) -> tuple[Relation, ...]:
        return tuple(r for r in self.relations if r.kind == "source")

    def render(self, relation_name: Callable[[Relation], str]) -> str:
        """The SQL with each macro replaced: relations by ``relation_name(r)``, config by nothing.

        Line numbers are kept, so an error in the rendered SQL points at the file's line.
        """
        out, pos = [], 0
        for m in self._macros:
            out.append(self.text[pos : m.start])
            out.append("" if m.relation is None else relation_name(m.relation))
            pos = m.end
        out.append(self.text[pos:])
        return "".join(out)


@dataclasses.dataclass(frozen=True)
class SourceTable:
    source: str
    name: str
    description: str = ""

    @property
    def relation(self) -> Relation:
        return Relation("source", self.name, self.source)


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    models: Mapping[str, Model]  # in dependency order: every model after the models it refs
    sources: Mapping[tuple[str, str], SourceTable]

    @property
    def tests(self) -> list[DataTest]:
        return [t for m in self.models.values() for t in m.tests]

    def select(self, names: Iterable[str] | None = None) -> list[Model]:
        """The models called ``names`` (all when None), in dependency order."""
        if names is None:
            return list(self.models.values())
        wanted = set(names)
        unknown = sorted(wanted - set(self.models))
        if unknown:
            raise ProjectError(f"unknown model(s) {', '.join(unknown)}; expected one of {', '.join(self.models)}")
        return [m for n, m in self.models.items() if n in wanted]

    def source_tables(self) -> list[SourceTable]:
        return list(self.sources.values())


# -- parsing a model ------------------------------------------------------------------
def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _parse_macro(expr: str, where: str) -> tuple[Relation | None, str | None]:
    usage = "expected ref('model'), source('lake', 'table') or config(materialized='view'|'table')"
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise ProjectError(f"{where}: cannot parse {{{{{expr}}}}}; {usage}") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise ProjectError(f"{where}: {{{{{expr}}}}} is not a macro call; {usage}")
    fn = node.func.id
    if fn not in ("ref", "source", "config"):
        raise ProjectError(f"{where}: unknown macro {fn!r} in {{{{{expr}}}}}; {usage}")
    args = []
    for a in node.args:
        if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
            raise ProjectError(f"{where}: {fn}() takes string literals; got {ast.unparse(a)}")
        args.append(a.value)
    kwargs = {}
    for k in node.keywords:
        if k.arg is None or not (isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)):
            raise ProjectError(f"{where}: {fn}() takes string literals; got {ast.unparse(k)}")
        kwargs[k.arg] = k.value.value
    if fn == "ref":
        if len(args) != 1 or kwargs:
            raise ProjectError(f"{where}: ref() takes one model name, e.g. ref('sensor_health_daily')")
        return Relation("ref", args[0]), None
    if fn == "source":
        if len(args) != 2 or kwargs:
            raise ProjectError(f"{where}: source() takes a source and a table, e.g. source('lake', 'anomalies')")
        return Relation("source", args[1], args[0]), None
    if args or set(kwargs) != {"materialized"}:
        raise ProjectError(f"{where}: config() takes only materialized='view' or materialized='table'")
    if kwargs["materialized"] not in MATERIALIZATIONS:
        raise ProjectError(
            f"{where}: materialized={kwargs['materialized']!r} is not supported; expected one of "
            + ", ".join(MATERIALIZATIONS)
        )
    return None, kwargs["materialized"]


def _scan_macros(text: str, path: Path) -> list[_Macro]:
    macros, pos = [], 0
    for m in _MACRO.finditer(text):
        _check_plain(text, pos, m.start(), path)
        where = f"{path}:{_line_of(text, m.start())}"
        relation, materialized = _parse_macro(m.group(1), where)
        macros.append(_Macro(relation, materialized, m.start(), m.end(), _line_of(text, m.start())))
        pos = m.end()
    _check_plain(text, pos, len(text), path)
    return macros


def _check_plain(text: str, start: int, end: int, path: Path) -> None:
    segment = text[start:end]
    i = segment.find("{{")
    if i >= 0:
        raise ProjectError(f"{path}:{_line_of(text, start + i)}: '{{{{' without a closing '}}}}'")
    j = _JINJA_BLOCK.search(segment)
    if j:
        raise ProjectError(
            f"{path}:{_line_of(text, start + j.start())}: jinja statements and comments "
            "({% %}, {# #}) are not supported; only {{ ref() }}, {{ source() }} and {{ config() }}"
        )


def _header(text: str, path: Path) -> str:
    lines = text.splitlines()
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    header = []
    while i < len(lines) and lines[i].lstrip().startswith("--"):
        header.append(lines[i].lstrip()[2:].strip())
        i += 1
    if not any(header):
        raise ProjectError(
            f"{path}:{i + 1}: a model starts with a header comment (-- ...) saying what one row is, "
            "its grain and its time column"
        )
    return "\n".join(header).strip()


def parse_model(name: str, text: str, path: Path) -> Model:
    """Parse one model file (without its schema.yml entry)."""
    if not _NAME.match(name):
        raise ProjectError(f"{path}: model name {name!r} is invalid; expected lower_snake_case ([a-z_][a-z0-9_]*)")
    header = _header(text, path)
    macros = _scan_macros(text, path)
    configs = [m for m in macros if m.relation is None]
    if len(configs) > 1:
        raise ProjectError(f"{path}:{configs[1].line}: config() appears more than once")
    relations: list[Relation] = []
    for m in macros:
        if m.relation is not None and m.relation not in relations:
            relations.append(m.relation)
    return Model(
        name=name,
        path=path,
        text=text,
        header=header,
        materialized=configs[0].materialized if configs else "view",
        relations=tuple(relations),
        _macros=tuple(macros),
    )


# -- schema.yml -----------------------------------------------------------------------
def _expect_keys(entry: Any, where: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
    if not isinstance(entry, dict):
        raise ProjectError(f"{where}: expected a mapping, got {type(entry).__name__} {entry!r}")
    unknown = [k for k in entry if k not in allowed]
    if unknown:
        raise ProjectError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(allowed)}")
    for k in required:
        if k not in entry:
            raise ProjectError(f"{where}: missing key {k!r}")
    return entry


def _expect_list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProjectError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
    return value


def _expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ProjectError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
    return value


def _tests_of(entry: dict, where: str) -> list:
    if "tests" in entry and "data_tests" in entry:
        raise ProjectError(f"{where}: use either 'tests' or 'data_tests', not both")
    key = "data_tests" if "data_tests" in entry else "tests"
    return _expect_list(entry.get(key), f"{where}.{key}")


def _parse_test(spec: Any, model: str, column: str | None, where: str) -> DataTest:
    if isinstance(spec, str):
        kind, args = spec, {}
    elif isinstance(spec, dict) and len(spec) == 1:
        kind, args = next(iter(spec.items()))
        args = args or {}
    else:
        raise ProjectError(f"{where}: a test is a name or a one-key mapping {{name: {{arguments}}}}; got {spec!r}")
    if kind not in TEST_KINDS:
        raise ProjectError(f"{where}: unknown test {kind!r}; expected one of {', '.join(TEST_KINDS)}")
    allowed = {
        "unique": ["columns", "config", "name"],
        "not_null": ["columns", "config", "name"],
        "accepted_values": ["values", "config", "name"],
        "relationships": ["to", "field", "config", "name"],
    }[kind]
    if column is not None:
        allowed = [a for a in allowed if a != "columns"]
    required = {"accepted_values": ["values"], "relationships": ["to", "field"]}.get(kind, [])
    args = _expect_keys(args, f"{where}.{kind}", allowed, required)
    config = _expect_keys(args.get("config") or {}, f"{where}.{kind}.config", ["severity", "where"])
    test_where = config.get("where")
    if test_where is not None and not (isinstance(test_where, str) and test_where.strip()):
        raise ProjectError(f"{where}.{kind}.config: where must be a SQL condition, got {test_where!r}")
    severity = config.get("severity", "error")
    if severity not in SEVERITIES:
        raise ProjectError(f"{where}.{kind}: severity {severity!r} is invalid; expected one of {', '.join(SEVERITIES)}")
    if column is not None:
        columns = (column,)
    else:
        if kind in ("accepted_values", "relationships"):
            raise ProjectError(f"{where}: {kind} is a column test; put it under the column")
        cols = args.get("columns")
        if not (isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols)):
            raise ProjectError(f"{where}.{kind}: a model-level {kind} test needs columns: [col, ...]")
        columns = tuple(cols)
    name = args.get("name")
    if name is not None and not (isinstance(name, str) and _CHECK_NAME.match(name)):
        raise ProjectError(f"{where}.{kind}: name {name!r} is invalid; expected letters, digits and _")
    values: tuple = ()
    to = field = None
    if kind == "accepted_values":
        raw = args["values"]
        if not (isinstance(raw, list) and raw and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in raw)):
            raise ProjectError(
                f"{where}.accepted_values: values must be a non-empty list of strings or numbers; got {raw!r} "
                "(quote words such as 'yes', 'no', 'on' and 'off', which YAML reads as booleans)"
            )
        values = tuple(raw)
    if kind == "relationships":
        to_text = _expect_str(args["to"], f"{where}.relationships.to")
        m = re.fullmatch(r"\s*(?:\{\{)?(.*?)(?:\}\})?\s*", to_text, re.S)
        to, _ = _parse_macro(m.group(1) if m else to_text, f"{where}.relationships.to")
        if to is None:
            raise ProjectError(f"{where}.relationships.to: expected ref('model') or source('lake', 'table')")
        field = _expect_str(args["field"], f"{where}.relationships.field")
    return DataTest(model, kind, columns, values, to, field, severity, name, test_where)


def _parse_schema(doc: Any, path: Path) -> tuple[dict, dict]:
    """(sources, models) of a schema.yml document."""
    where = str(path)
    doc = _expect_keys(doc or {}, where, ["version", "sources", "models"])
    if doc.get("version", 2) != 2:
        raise ProjectError(f"{where}: version {doc['version']!r} is not supported; expected 2")
    sources: dict[tuple[str, str], SourceTable] = {}
    for i, s in enumerate(_expect_list(doc.get("sources"), f"{where}: sources")):
        sw = f"{where}: sources[{i}]"
        s = _expect_keys(s, sw, ["name", "description", "tables"], ["name", "tables"])
        sname = _expect_str(s["name"], f"{sw}.name")
        for j, t in enumerate(_expect_list(s["tables"], f"{sw}.tables")):
            tw = f"{sw}.tables[{j}]"
            t = _expect_keys(t, tw, ["name", "description"], ["name"])
            tname = _expect_str(t["name"], f"{tw}.name")
            if (sname, tname) in sources:
                raise ProjectError(f"{tw}: source table {sname}.{tname} is declared twice")
            sources[(sname, tname)] = SourceTable(sname, tname, str(t.get("description", "")).strip())
    models: dict[str, dict] = {}
    for i, m in enumerate(_expect_list(doc.get("models"), f"{where}: models")):
        mw = f"{where}: models[{i}]"
        m = _expect_keys(m, mw, ["name", "description", "columns", "tests", "data_tests", "config"], ["name"])
        name = _expect_str(m["name"], f"{mw}.name")
        if name in models:
            raise ProjectError(f"{mw}: model {name!r} is documented twice")
        mw = f"{where}: models[{name}]"
        if "config" in m:
            raise ProjectError(f"{mw}: set config in the model file with {{{{ config(materialized=...) }}}}")
        tests = [_parse_test(t, name, None, f"{mw}.tests[{k}]") for k, t in enumerate(_tests_of(m, mw))]
        columns = []
        for k, c in enumerate(_expect_list(m.get("columns"), f"{mw}.columns")):
            cw = f"{mw}.columns[{k}]"
            c = _expect_keys(c, cw, ["name", "description", "tests", "data_tests"], ["name"])
            cname = _expect_str(c["name"], f"{cw}.name")
            if any(col.name == cname for col in columns):
                raise ProjectError(f"{cw}: column {cname!r} is documented twice")
            cw = f"{mw}.columns[{cname}]"
            columns.append(Column(cname, str(c.get("description", "")).strip()))
            tests += [_parse_test(t, name, cname, f"{cw}.tests[{k}]") for k, t in enumerate(_tests_of(c, cw))]
        seen: set[str] = set()
        for t in tests:
            if t.name in seen:
                raise ProjectError(f"{mw}: two tests are named {t.name!r}; give one a name: ...")
            seen.add(t.name)
        models[name] = {"description": str(m.get("description", "")).strip(), "columns": tuple(columns), "tests": tuple(tests)}
    return sources, models


# -- the project ----------------------------------------------------------------------
def _toposort(models: Mapping[str, Model]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, stack: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = stack[stack.index(name) :] + [name]
            raise ProjectError(f"ref() cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in sorted(models[name].refs):
            visit(dep, stack + [name])
        state[name] = 2
        order.append(name)

    for name in sorted(models):
        visit(name, [])
    return order


def build_project(root: Path, model_texts: Mapping[str, tuple[Path, str]], schema_doc: Any, schema_path: Path) -> Project:
    """A checked project from model texts ``{name: (path, text)}`` and a parsed schema.yml."""
    sources, documented = _parse_schema(schema_doc, schema_path)
    models: dict[str, Model] = {}
    for name, (path, text) in model_texts.items():
        model = parse_model(name, text, path)
        for macro in model._macros:
            r = macro.relation
            if r is None:
                continue
            if r.kind == "ref" and r.name not in model_texts:
                raise ProjectError(
                    f"{path}:{macro.line}: {r} names no model; expected one of {', '.join(sorted(model_texts))}"
                )
            if r.kind == "ref" and r.name == name:
                raise ProjectError(f"{path}:{macro.line}: a model cannot ref() itself")
            if r.kind == "source" and (r.source, r.name) not in sources:
                declared = ", ".join(f"{s}.{t}" for s, t in sources) or "none"
                raise ProjectError(
                    f"{path}:{macro.line}: {r} is not declared under sources in {schema_path}; declared: {declared}"
                )
        doc = documented.get(name)
        if doc is not None:
            model = dataclasses.replace(model, **doc)
        models[name] = model
    for name in documented:
        if name not in models:
            raise ProjectError(f"{schema_path}: models[{name}] has no file {root / MODELS_DIR / (name + '.sql')}")
    clash = sorted({t for _, t in sources} & set(models))
    if clash:
        raise ProjectError(f"{root / MODELS_DIR / (clash[0] + '.sql')}: model {clash[0]!r} has the name of a source table")
    for model in models.values():
        for t in model.tests:
            if t.to is not None and t.to.kind == "ref" and t.to.name not in models:
                raise ProjectError(f"{schema_path}: models[{model.name}] test {t.name}: {t.to} names no model")
            if t.to is not None and t.to.kind == "source" and (t.to.source, t.to.name) not in sources:
                raise ProjectError(f"{schema_path}: models[{model.name}] test {t.name}: {t.to} is not a declared source")
    return Project(root=root, models={n: models[n] for n in _toposort(models)}, sources=sources)


def load_project(root: str | Path) -> Project:
    """Read and check the SQL project at ``root`` (``models/*.sql`` and ``models/schema.yml``)."""
    root = Path(root)
    models_dir = root / MODELS_DIR
    if not models_dir.is_dir():
        raise ProjectError(f"{models_dir}: no such directory; expected the SQL project's models there")
    texts = {p.stem: (p, p.read_text(encoding="utf-8")) for p in sorted(models_dir.glob("*.sql"))}
    schema_path = models_dir / SCHEMA_FILE
    doc = None
    if schema_path.exists():
        try:
            doc = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ProjectError(f"{schema_path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return build_project(root, texts, doc, schema_path)
