"""``iot-platform backfill START END``: build a range of days in the UI's Dagster instance."""

from __future__ import annotations

import argparse
import datetime as dt

from iot_platform.cli import CliError
from iot_platform.cli.dagster_home import use_dagster_home

DEFAULT_SELECT = "group:lake"


def run(args: argparse.Namespace) -> int:
    home = use_dagster_home()  # before Dagster reads DAGSTER_HOME

    from iot_platform.cli import runs
    from iot_platform.definitions import defs
    from iot_platform.settings import data_dir

    keys = runs.resolve_selection(defs, args.select)
    partitions = runs.partitions_of(defs, keys)
    if partitions is None:
        raise CliError(f"--select {args.select!r} has no daily partitions; use `iot-platform materialize` for it")
    first = runs.check_partition_key(args.start, partitions)
    last = runs.check_partition_key(args.end, partitions)
    if first > last:
        raise CliError(f"START {first} is after END {last}; expected START <= END within {runs.valid_range_text(partitions)}")
    plan = runs.Plan(keys=keys, first=first, last=last)
    if args.workers > 1:
        from iot_platform.orchestration.backfill import LAKE_ASSETS

        if {k.to_user_string() for k in keys} != set(LAKE_ASSETS):
            raise CliError(
                f"--workers {args.workers} builds the whole lake (--select {DEFAULT_SELECT!r}); "
                f"--select {args.select!r} runs with --workers 1"
            )
    days = (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days + 1
    on = f" on {args.workers} workers" if args.workers > 1 else ""
    print(f"backfill {first}..{last} ({days} day{'s' * (days != 1)}) of {', '.join(k.to_user_string() for k in keys)}{on}", flush=True)
    return runs.run_and_report("backfill", defs, plan, home, data_root=str(data_dir()), debug=args.debug, workers=args.workers)


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"workers {text!r} is not valid; expected a whole number >= 1")
    return n


def register(sub) -> None:
    p = sub.add_parser(
        "backfill",
        help="build the days START..END of the lake assets, recorded in the UI's Dagster instance",
        description=(
            "Materialize every day from START to END (inclusive) as one run in the Dagster instance that "
            "`iot-platform ui` uses ($DAGSTER_HOME, default $IOT_DATA_DIR/dagster_home), so the run shows "
            "in the UI. Prints each partition as it is written, then a one-line summary."
        ),
    )
    p.add_argument("start", metavar="START", help="first day, YYYY-MM-DD")
    p.add_argument("end", metavar="END", help="last day, YYYY-MM-DD (inclusive)")
    p.add_argument(
        "--select", default=DEFAULT_SELECT,
        help=f"which assets, in Dagster's selection syntax (default {DEFAULT_SELECT!r}; e.g. 'anomalies', '+anomalies')",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=_workers, default=1,
        help=(
            "processes building days at once (default 1: one process, one run step per asset). With N > 1 the "
            "run is the backfill_days job on Dagster's multiprocess executor: readings of N chunks of days side "
            "by side, then window_stats and anomalies day after day; from 3 workers backfill_days_in_waves, which "
            "also builds the window_stats, then the anomalies, of past days side by side; the same lake, byte for byte"
        ),
    )  # fmt: skip
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and Dagster's event log")
    p.set_defaults(func=run)
