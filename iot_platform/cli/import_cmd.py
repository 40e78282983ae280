"""``iot-platform import``: land historical readings from CSV or Parquet files."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pyarrow as pa

from iot_platform.cli import CliError
from iot_platform.core.reading_rules import mapped_keys
from iot_platform.core.schemas import METRICS
from iot_platform.core.timestamps import TimestampParser as _TimestampParser
from iot_platform.io.import_readers import check_file
from iot_platform.io.importer import ImportOptions, ImportResult, import_file
from iot_platform.settings import landing_dir

EPILOG = f"""\
Columns are found by name unless mapped: sensor_id, seq, a timestamp (ts, timestamp, time, datetime,
date) and the metrics ({', '.join(METRICS)}); any subset of the metrics will do.
Timestamps: ISO 8601, epoch numbers (--timestamp-unit), or any layout pandas reads (--timestamp-format
for unusual ones); times without an offset are in --timezone (default UTC). A day/month order only a
guess could give (03.01.2024) is refused unless some value in the file settles it: pass --timestamp-format.
Bad rows (and lines with bytes that are not UTF-8 or an unclosed quote) go to
landing/_quarantine/import-<name>/ with the reason, file and line; good rows are kept. The command exits 2
when a file gives no row at all. Then put the days the file spans into the lake with the command it
prints: iot-platform backfill FIRST_DAY LAST_DAY.

examples:
  iot-platform import plant.csv
  iot-platform import export.csv --sensor-id boiler_1 --map temperature=value
  iot-platform import logger.csv --sensor-id-column device --map temperature=temp_c --timezone Europe/Berlin
"""


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import historical readings from CSV or Parquet files into the landing zone",
        description="Put readings from CSV or Parquet files into $IOT_DATA_DIR/landing/import-<name>/ "
        "in the landing format, quarantining bad rows.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".csv, .tsv (optionally .gz/.bz2/.zst) or .parquet")
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--sensor-id-column", help="the column holding the sensor id (default sensor_id)")
    ids.add_argument("--sensor-id", help="one sensor id for every row of the files")
    p.add_argument("--timestamp-column", help="the column holding the time (default: ts, timestamp, time, ...)")
    p.add_argument("--timestamp-format", help="strptime format of the times, e.g. '%%d.%%m.%%Y %%H:%%M'")
    p.add_argument("--timestamp-unit", default="s", choices=tuple(_TimestampParser.UNITS),
                   help="unit of numeric (epoch) times (default s)")
    p.add_argument("--timezone", default="UTC", help="zone of times without an offset (default UTC)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="read FIELD from COLUMN, e.g. temperature=temp_c (repeatable)")
    p.add_argument("--seq-column", help="the column holding a device sequence number (default seq if present)")
    p.add_argument("--delimiter", help="CSV field separator (default , or tab for .tsv)")
    p.add_argument("--stream", help="landing sub-directory (default import-<file name>)")
    p.add_argument("--rows-per-file", type=int, default=1_000_000, help="rows per landing file (default 1000000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        options = ImportOptions(
            sensor_id=args.sensor_id,
            sensor_id_column=args.sensor_id_column,
            timestamp_column=args.timestamp_column,
            timestamp_format=args.timestamp_format,
            timestamp_unit=args.timestamp_unit,
            timezone=args.timezone,
            mapping=mapped_keys(args.map),
            seq_column=args.seq_column,
            delimiter=args.delimiter,
            stream=args.stream,
            rows_per_file=args.rows_per_file,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    paths = [Path(f) for f in args.files]
    try:
        for path in paths:  # every file is checked before the first one is imported
            check_file(path)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    received = dt.datetime.now(dt.timezone.utc)  # one import time for all files
    landing = landing_dir()
    results: list[ImportResult] = []
    for i, path in enumerate(paths):
        try:
            r = import_file(path, landing, options, received_at=received)
        except (ValueError, pa.ArrowInvalid) as exc:
            print_next_step(results)  # what the earlier files landed still needs it
            done = f" ({i} earlier files were imported)" if i else ""
            raise CliError(f"{exc}{done}") from exc
        print(summary(r))
        results.append(r)
    print_next_step(results)
    refused = next((r for r in results if r.landed == 0), None)
    if refused is not None:
        raise CliError(refusal(refused))
    return 0


def print_next_step(results: list[ImportResult]) -> None:
    """The command that puts the days the landed readings span into the lake."""
    days = [r.days for r in results if r.days is not None]
    if days:
        first, last = min(d[0] for d in days), max(d[1] for d in days)
        # `backfill` runs the day partitions in the UI's Dagster instance (micro-batches only take new landing files)
        print(f"Next, put these days into the lake: iot-platform backfill {first.isoformat()} {last.isoformat()}")


def summary(r: ImportResult) -> str:
    """What one file gave: rows read, landed, quarantined by reason, and the time and days it spans."""
    text = f"{r.path.name}: {r.rows} rows read, {r.landed} landed"
    if r.landed:
        text += f" in landing/{r.stream}"
    text += f", {r.quarantined} quarantined"
    if r.quarantine_file is not None:
        text += f" in {r.quarantine_file} ({by_reason(r)})"
    if r.ts_min is not None and r.ts_max is not None and r.days is not None:
        text += (
            f"\n  readings from {r.ts_min.isoformat()} to {r.ts_max.isoformat()} "
            f"(days {r.days[0].isoformat()} to {r.days[1].isoformat()})"
        )
    return text


def by_reason(r: ImportResult) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(r.reasons.items(), key=lambda kv: (-kv[1], kv[0])))


def refusal(r: ImportResult) -> str:
    if r.rows == 0:
        return f"{r.path} has a header but no data rows; nothing was landed"
    return (
        f"{r.path}: every row was refused ({by_reason(r)}), e.g. {r.first_refusal}; nothing was landed; "
        f"the reasons per row are in {r.quarantine_file}"
    )
