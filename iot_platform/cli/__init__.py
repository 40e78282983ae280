"""The ``iot-platform`` command: one entry point, one error handler.

Each subcommand lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMANDS = ("ui", "backfill", "materialize", "capture", "import_cmd", "sql", "doctor", "alerts", "dashboard")


class CliError(Exception):
    """An error a person can act on; printed as ``Error: ...`` without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iot-platform", description="An IoT sensor fleet platform: open the UI, capture from serial ports, import files, query."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"iot_platform.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        from iot_platform.io.objstore import lake_store_from_env

        try:  # a bad IOT_LAKE_URL is one line before anything runs, not a failure inside every run
            lake_store_from_env()
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one error handler of the CLI
        if args.debug:
            raise
        message = str(exc) if isinstance(exc, (CliError, OSError, ValueError)) else f"{type(exc).__name__}: {exc}"
        print(f"Error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, CliError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
