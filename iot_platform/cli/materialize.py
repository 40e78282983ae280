"""``iot-platform materialize``: build assets (one day of the lake, or the warehouse) in the UI's Dagster instance."""

from __future__ import annotations

import argparse

from iot_platform.cli import CliError
from iot_platform.cli.dagster_home import use_dagster_home


def run(args: argparse.Namespace) -> int:
    home = use_dagster_home()  # before Dagster reads DAGSTER_HOME

    from iot_platform.cli import runs
    from iot_platform.definitions import defs
    from iot_platform.settings import data_dir

    select = args.select or ("group:lake" if args.partition else "group:warehouse")
    keys = runs.resolve_selection(defs, select)
    partitions = runs.partitions_of(defs, keys)
    names = ", ".join(k.to_user_string() for k in keys)
    if partitions is not None and args.partition is None:
        raise CliError(
            f"{names} are partitioned by day; pass --partition YYYY-MM-DD from {runs.valid_range_text(partitions)}"
        )
    if partitions is None and args.partition is not None:
        raise CliError(f"{names} have no partitions; leave out --partition {args.partition}")
    key = runs.check_partition_key(args.partition, partitions) if partitions is not None else None
    plan = runs.Plan(keys=keys, first=key, last=key)
    print(f"materialize {names}" + (f" for {key}" if key else ""), flush=True)
    return runs.run_and_report("materialize", defs, plan, home, data_root=str(data_dir()), debug=args.debug)


def register(sub) -> None:
    p = sub.add_parser(
        "materialize",
        help="build assets now (one day of the lake, or the warehouse), recorded in the UI's Dagster instance",
        description=(
            "Materialize the selected assets as one run in the Dagster instance that `iot-platform ui` uses "
            "($DAGSTER_HOME, default $IOT_DATA_DIR/dagster_home), so the run shows in the UI. Without "
            "--select: the lake assets for --partition, or the warehouse's SQL models without it."
        ),
    )
    p.add_argument(
        "--select", default=None,
        help="which assets, in Dagster's selection syntax (e.g. 'anomalies', 'group:lake', 'group:warehouse')",
    )  # fmt: skip
    p.add_argument("--partition", metavar="KEY", default=None, help="the day for daily-partitioned assets, YYYY-MM-DD")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and Dagster's event log")
    p.set_defaults(func=run)
