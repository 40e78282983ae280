"""``iot-platform doctor``: list damaged files of the lake and the landing zone; ``--repair`` them.

    iot-platform doctor              # exit 0: nothing damaged; 1: damaged files listed
    iot-platform doctor --repair     # quarantine them (lake/_quarantine/) and rebuild their days
    iot-platform doctor --deep       # also decode every row group (reads the whole lake)
    iot-platform doctor --convert    # make a lake written before the Delta tables one, in place

Days are rebuilt with the fleet and detection settings of the environment
(``IOT_FLEET_SIZE``, ``IOT_FLEET_SEED``, ...), as the assets would: run it with
the settings the platform runs with.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa

from iot_platform.cli import CliError
from iot_platform.cli.sql import format_table
from iot_platform.io.lake import open_lake
from iot_platform.io.lake_doctor import Damage, convert, repair, scan
from iot_platform.settings import DATA_DIR_ENV, data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="find damaged lake and landing files; --repair quarantines them and rebuilds their days",
        description=(
            "Check every file of every lake table and every landing file waiting for ingestion: not Parquet, "
            "empty, truncated, unreadable footer, wrong schema. Exit 0 when nothing is damaged, 1 when damaged "
            "files were found (and not all repaired). --repair moves each damaged file to lake/_quarantine/ "
            "with its reason (nothing is deleted) and rebuilds its day from its sources, with the fleet and "
            "detection settings of the environment."
        ),
    )
    p.add_argument("--repair", action="store_true", help="quarantine damaged files and rebuild their days")
    p.add_argument("--deep", action="store_true", help="also decode every row group (reads all data)")
    p.add_argument("--convert", action="store_true",
                   help="convert a lake written before the lake became Delta tables, in place (once)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, help=f"the data root (default: ${DATA_DIR_ENV}, else ./data)")
    p.set_defaults(func=run)


def listing(root: Path, damaged: list[Damage]) -> str:
    table = pa.table({
        "table": [d.table for d in damaged],
        "day": [d.day.isoformat() if d.day else "-" for d in damaged],
        "file": [str(d.path.relative_to(root)) for d in damaged],
        "problem": [d.reason for d in damaged],
    })  # fmt: skip
    return format_table(table).replace(f"({len(damaged)} row{'s' if len(damaged) != 1 else ''})", f"({len(damaged)} damaged)")


def run(args: argparse.Namespace) -> int:
    root = args.data_dir.resolve() if args.data_dir else data_dir()
    if not root.is_dir():
        raise CliError(f"data directory {root} does not exist; set {DATA_DIR_ENV} or pass --data-dir")
    if args.convert:
        from iot_platform.io.commit import batch_lock

        with batch_lock(open_lake(root)):  # no micro-batch meanwhile
            lines = convert(root)
        print("\n".join(lines) if lines else "Nothing to convert: every lake table is a Delta table.")
        return 0
    found = scan(root, deep=args.deep)
    checked = f"{found.files} lake files in {found.partitions} partitions and {found.landing_files} landing files checked"
    if not found.damaged:
        print(f"No damaged files: {checked}.")
        return 0
    print(listing(root, found.damaged), end="")
    if not args.repair:
        print(f"{len(found.damaged)} damaged ({checked}); 'iot-platform doctor --repair' moves them to "
              "lake/_quarantine/ and rebuilds their days")  # fmt: skip
        return 1
    # the settings the assets use, read at the edge
    from iot_platform.io.commit import batch_lock
    from iot_platform.orchestration.resources import detection_from_env, fleet_from_env

    fleet = fleet_from_env().params()
    report = repair(root, found.damaged, fleet=fleet, settings=detection_from_env().settings(fleet, root),
                    now_us=time.time_ns() // 1000, lock=lambda: batch_lock(open_lake(root)))  # fmt: skip
    for damage, dest in report.quarantined:
        print(f"Quarantined {damage.path.relative_to(root)} -> {dest.relative_to(root)}")
    for line in report.actions:
        print(line)
    for line in report.problems:
        print(f"Warning: {line}")
    left = scan(root, deep=args.deep).damaged
    if left:
        print(f"{len(left)} damaged files remain; run 'iot-platform doctor' to list them")
    return 1 if left or any("left as it is" in p for p in report.problems) else 0
