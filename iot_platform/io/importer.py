"""Import historical readings from CSV or Parquet files into the landing zone.

A file is read in chunks (``io.import_readers``: CSV blocks cut into lines,
or Parquet row batches), each chunk is validated column by column with
:func:`iot_platform.core.import_columns.readings_from_columns` (vectorized; no
Python loop per row), good rows are written to hidden staged Parquet files in
the landing format, bad rows to a quarantine file with their reason. When the
whole file has been read, the staged files are renamed into
``landing/import-<name>/`` (and the quarantine file into
``landing/_quarantine/import-<name>/``): an import that fails half-way leaves
no landing file behind.

A line is the unit of quarantine: a line with an unclosed quote is set aside
(a value may not span lines; otherwise the quote would swallow the rest of
the file), a value that is not UTF-8 costs its row, and every quarantine
record names the file, its line and its data row. A day/month
order that only a guess could give (``03.01.2024``) is settled by a value
elsewhere in the file that reads one way only, or refused
(:class:`~iot_platform.core.timestamps.AmbiguousDayMonth`).

Columns are found by name: ``sensor_id``, ``seq``, a timestamp (``ts``,
``timestamp``, ``time``, ``datetime``, ``date``; any case) and the metric
names, unless options say otherwise (``--map temperature=temp_c``). Any
sampling interval and any subset of the metrics works. Re-importing a file
lands its rows again; they carry the same (sensor_id, ts) keys.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.import_columns import readings_from_columns
from iot_platform.core.reading_rules import FIELDS, check_sensor_id
from iot_platform.core.schemas import METRICS
from iot_platform.core.timestamps import AmbiguousDayMonth, TimestampParser
from iot_platform.io.import_readers import (
    Chunk,
    CsvReader,
    ImportFileError,
    ParquetReader,
    check_file,
    open_reader,
)
from iot_platform.io.landing import QuarantineWriter, SpoolWriter, StagedFile, import_source, import_stream, slug
from iot_platform.core.calendar import from_us, to_us

log = logging.getLogger("iot_platform.import")

TIMESTAMP_NAMES = ("ts", "timestamp", "time", "datetime", "date_time", "date")


@dataclass(frozen=True)
class ImportOptions:
    """How to read the files; validates itself on construction.

    ``mapping`` pairs a field (``sensor_id``, ``seq``, ``ts`` or a metric)
    with the file's column, e.g. ``(("temperature", "temp_c"),)``.
    """

    sensor_id: str | None = None
    sensor_id_column: str | None = None
    timestamp_column: str | None = None
    timestamp_format: str | None = None
    timestamp_unit: str = "s"
    timezone: str = "UTC"
    mapping: tuple[tuple[str, str], ...] = ()
    seq_column: str | None = None
    delimiter: str | None = None  # default: ',' (tab for .tsv)
    stream: str | None = None
    rows_per_file: int = 1_000_000
    # bytes of CSV per chunk: Arrow's reader reads several blocks ahead, so this bounds memory
    block_size: int = 4 << 20
    batch_rows: int = 262_144  # rows of Parquet per chunk

    def __post_init__(self) -> None:
        if self.sensor_id is not None and self.sensor_id_column is not None:
            raise ValueError("give either a sensor id column or one sensor id for the whole file, not both")
        if self.sensor_id is not None:
            check_sensor_id(self.sensor_id)
        names = [n for n, _ in self.mapping]
        for n in names:
            if n not in FIELDS:
                raise ValueError(f"field {n!r} is not known; expected one of {', '.join(FIELDS)}")
        if len(set(names)) != len(names):
            raise ValueError("a field is mapped twice")
        cols = [c for _, c in self.mapping]
        if len(set(cols)) != len(cols):
            raise ValueError("a column is mapped to two fields")
        for opt, name in (("sensor_id_column", "sensor_id"), ("timestamp_column", "ts"), ("seq_column", "seq")):
            if getattr(self, opt) is not None and name in names:
                raise ValueError(f"{name} is given both as --{opt.replace('_', '-')} and in the mapping")
        if self.sensor_id is not None and "sensor_id" in names:
            raise ValueError("a sensor id for the whole file and a sensor_id column mapping exclude each other")
        TimestampParser(timezone=self.timezone, fmt=self.timestamp_format, unit=self.timestamp_unit)  # validates
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\n\r'):
            raise ValueError(f"delimiter {self.delimiter!r} is not valid; expected one character, not a quote or a line break")
        if self.stream is not None and self.stream != slug(self.stream):
            raise ValueError(f"stream {self.stream!r} is not a slug; expected e.g. {slug(self.stream)!r}")
        for opt in ("rows_per_file", "block_size", "batch_rows"):
            if not (isinstance(getattr(self, opt), int) and getattr(self, opt) >= 1):
                raise ValueError(f"{opt} {getattr(self, opt)!r} is not valid; expected a whole number of at least 1")


@dataclass
class ImportResult:
    path: Path
    stream: str
    rows: int = 0  # data rows read, including bad ones
    landed: int = 0
    quarantined: int = 0
    files: list[Path] = field(default_factory=list)
    quarantine_file: Path | None = None
    ts_min: dt.datetime | None = None
    ts_max: dt.datetime | None = None
    seconds: float = 0.0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)  # quarantined rows by code
    first_refusal: str | None = None  # "line 12: <reason>" for the earliest quarantined row

    @property
    def days(self) -> tuple[dt.date, dt.date] | None:
        """The first and last UTC day (lake partition) of the landed readings."""
        if self.ts_min is None or self.ts_max is None:
            return None
        return self.ts_min.astimezone(dt.timezone.utc).date(), self.ts_max.astimezone(dt.timezone.utc).date()



def resolve_columns(available: Sequence[str], options: ImportOptions, file_name: str) -> dict[str, str]:
    """Which column of the file feeds which field: ``{field: column}``."""
    listed = ", ".join(available) or "(none)"

    def need(column: str, what: str) -> str:
        if column not in available:
            raise ValueError(f"column {column!r} ({what}) is not in {file_name}; its columns are: {listed}")
        return column

    def auto(names: Sequence[str]) -> str | None:
        lower = {c.lower(): c for c in available}
        return next((lower[n] for n in names if n in lower), None)

    mapping = dict(options.mapping)
    out: dict[str, str] = {}
    for name, column in mapping.items():
        out[name] = need(column, f"mapped to {name}")
    if options.timestamp_column is not None:
        out["ts"] = need(options.timestamp_column, "the timestamp column")
    elif "ts" not in out:
        found = auto(TIMESTAMP_NAMES)
        if found is None:
            raise ValueError(
                f"no timestamp column in {file_name} (looked for {', '.join(TIMESTAMP_NAMES)}); "
                f"its columns are: {listed}; pass --timestamp-column COLUMN"
            )
        out["ts"] = found
    if options.sensor_id_column is not None:
        out["sensor_id"] = need(options.sensor_id_column, "the sensor id column")
    elif "sensor_id" not in out and options.sensor_id is None:
        found = auto(("sensor_id",))
        if found is None:
            raise ValueError(
                f"no sensor id in {file_name}: it has no sensor_id column (its columns are: {listed}); "
                "pass --sensor-id-column COLUMN or --sensor-id ID"
            )
        out["sensor_id"] = found
    if options.seq_column is not None:
        out["seq"] = need(options.seq_column, "the sequence number column")
    elif "seq" not in out:
        found = auto(("seq",))
        if found is not None and found not in out.values():
            out["seq"] = found
    for m in METRICS:
        if m not in out and m in available and m not in out.values():
            out[m] = m
    if not any(m in out for m in METRICS):
        raise ValueError(
            f"no metric columns in {file_name}: its columns are: {listed}; expected one of "
            f"{', '.join(METRICS)}, or map one with --map METRIC=COLUMN (e.g. --map temperature=value)"
        )
    return out



# -- import ---------------------------------------------------------------------------


def import_file(
    path: str | Path,
    landing_root: Path,
    options: ImportOptions = ImportOptions(),
    *,
    received_at: dt.datetime | None = None,
) -> ImportResult:
    """Land the readings of one CSV or Parquet file; see the module docstring.

    Raises :class:`ImportFileError` (naming the file) for a file that cannot
    be imported at all; nothing is landed then.
    """
    path = Path(path)
    kind = check_file(path)
    try:
        return _import(path, kind, landing_root, options, received_at or dt.datetime.now(dt.timezone.utc))
    except ImportFileError:
        raise
    except ValueError as exc:  # ArrowInvalid included: say which file
        if path.name in str(exc):
            raise
        raise ImportFileError(f"{path}: {exc}") from exc


def _source(path: Path, kind: str, options: ImportOptions) -> CsvReader | ParquetReader:
    return open_reader(
        path, kind, delimiter=options.delimiter, block_size=options.block_size, batch_rows=options.batch_rows
    )


def _import(path: Path, kind: str, landing_root: Path, options: ImportOptions, received: dt.datetime) -> ImportResult:
    started = time.monotonic()
    source = _source(path, kind, options)
    columns = resolve_columns(source.columns, options, path.name)
    wanted = set(columns.values())
    used = [c for c in source.columns if c in wanted]  # file order, for the quarantine's raw rows
    stream = options.stream or import_stream(path)
    src = import_source(path)
    received_us = _us(received)
    parser = TimestampParser(
        timezone=options.timezone, fmt=options.timestamp_format, unit=options.timestamp_unit, name=columns["ts"]
    )
    spool = SpoolWriter(landing_root, stream)
    quarantine = QuarantineWriter(landing_root, stream)
    result = ImportResult(path=path, stream=stream)
    staged: list[StagedFile] = []
    current: StagedFile | None = None
    ts_min: int | None = None
    ts_max: int | None = None

    def refuse(records: list[tuple[int, int | None, str, str, str]]) -> None:
        """Quarantine ``(row, line, code, reason, raw)`` records, in file order."""
        for row, line, code, reason, raw in sorted(records, key=lambda r: r[0]):
            where = {"line": line} if line is not None else {}
            quarantine.add(
                source=src, received_at_us=received_us, reason=reason, code=code, raw=raw,
                file=str(path.resolve()), row=row, **where,
            )  # fmt: skip
            result.quarantined += 1
            result.reasons[code] += 1
            if result.first_refusal is None:
                result.first_refusal = f"line {line}: {reason}" if line is not None else f"row {row}: {reason}"

    def set_aside() -> list[tuple[int, int | None, str, str, str]]:
        out = [(r.row, r.line, r.code, r.reason, r.text) for r in source.refused]
        source.refused.clear()
        return out

    def validate(chunk: Chunk):
        fields = {name: chunk.batch.column(col) for name, col in columns.items()}
        return readings_from_columns(
            fields, num_rows=chunk.batch.num_rows, timestamps=parser, source=src, received_at=received,
            sensor_id=options.sensor_id,
        )  # fmt: skip

    try:
        for chunk in source.batches(used):
            try:
                table, _, reasons = validate(chunk)
            except AmbiguousDayMonth as exc:
                # The value that settles the order may be anywhere: look through the whole column once.
                for seen in _source(path, kind, options).batches([columns["ts"]]):
                    parser.observe(seen.batch.column(0))
                    if parser.settled:
                        break
                if not parser.settled:
                    raise ImportFileError(f"{path}: {exc}") from None
                table, _, reasons = validate(chunk)
            if table.num_rows:
                if current is None:
                    current = spool.stage()
                    staged.append(current)
                current.write(table)
                bounds = pc.min_max(table.column("ts").cast(pa.int64()))
                lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
                ts_min = lo if ts_min is None else min(ts_min, lo)
                ts_max = hi if ts_max is None else max(ts_max, hi)
                if current.rows >= options.rows_per_file:
                    current.close()
                    current = None
            result.landed += table.num_rows
            records = set_aside()
            if reasons:
                positions = np.fromiter(sorted(reasons), dtype=np.int64, count=len(reasons))
                rows = chunk.rows[positions].tolist()
                lines = chunk.lines[positions].tolist() if chunk.lines is not None else [None] * len(rows)
                raws = chunk.batch.take(pa.array(positions)).to_pylist()
                for pos, row, line, raw in zip(positions.tolist(), rows, lines, raws):
                    code, reason = reasons[pos]
                    records.append((row, line, code, reason, _json_row(raw)))
            refuse(records)
        refuse(set_aside())
        result.rows = result.landed + result.quarantined
        result.files = spool.publish(staged)
        result.quarantine_file = quarantine.publish()
    except BaseException:
        for s in staged:
            s.discard()
        quarantine.discard()
        raise
    if ts_min is not None:
        result.ts_min = _dt(ts_min)
        result.ts_max = _dt(ts_max)  # type: ignore[arg-type]
    result.seconds = time.monotonic() - started
    # debug, not info: the CLI prints the summary (at info it was shown twice)
    log.debug(
        "%s: %d rows, %d landed in %d files under %s, %d quarantined (%.1f s)",
        path.name, result.rows, result.landed, len(result.files), stream, result.quarantined, result.seconds,
    )  # fmt: skip
    return result


def import_files(paths: Sequence[str | Path], landing_root: Path, options: ImportOptions = ImportOptions()) -> list[ImportResult]:
    """Import several files, one after the other; all share one import time (``received_at``).

    Every file is checked (exists, is a file of a known kind, not empty) before the first is imported.
    """
    for p in paths:
        check_file(Path(p))
    received = dt.datetime.now(dt.timezone.utc)
    return [import_file(p, landing_root, options, received_at=received) for p in paths]


def _json_row(row: dict) -> str:
    """A row of the file as JSON text (non-finite floats and times as strings)."""

    def clean(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, (dt.datetime, dt.date, dt.time)):
            return v.isoformat()
        if isinstance(v, bytes):
            return v.decode("utf-8", "backslashreplace")
        return v

    return json.dumps({k: clean(v) for k, v in row.items()}, ensure_ascii=False, default=str)


_us, _dt = to_us, from_us
