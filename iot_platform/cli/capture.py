"""``iot-platform capture``: read a serial port into the landing zone until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading

import pyarrow as pa

from iot_platform.cli import CliError
from iot_platform.core.buffer import DropPolicy
from iot_platform.core.reading_rules import mapped_keys
from iot_platform.core.schemas import METRICS
from iot_platform.core.serial_protocol import DEFAULT_COLUMNS, LINE_FORMATS, LineFormat
from iot_platform.core.timestamps import TS_UNITS
from iot_platform.io.capture import Capture, CaptureConfig
from iot_platform.io.serial_port import SUPPORTED_BAUD_RATES, PortError
from iot_platform.settings import landing_dir

EPILOG = """\
formats:
  csv    sensor_id,seq,temperature,humidity,pressure,vibration,battery_level (change with --columns;
         a column may be sensor_id, seq, ts, a metric, or _ to ignore a field)
  kv     key=value pairs separated by spaces, commas or semicolons (rename keys with --map)
  json   one JSON object per line (rename keys with --map)
  value  a bare number such as 450, stored as --metric of --sensor-id after x --scale + --offset
Lines starting with '#' are comments. Bad lines go to landing/_quarantine/<stream>/ with the reason.

examples:
  iot-platform capture --port /dev/ttyACM0 --baud 115200
  iot-platform capture --port socket://192.168.1.20:5000 --format json --map temperature=t
  iot-platform capture --port /dev/ttyUSB0 --format value --sensor-id lab_1 --metric temperature --scale 0.488
"""


def register(sub) -> None:
    p = sub.add_parser(
        "capture",
        help="capture readings from a serial port into the landing zone",
        description="Read lines from a serial port (a device path or a pyserial URL) and spool them as "
        "Parquet files into $IOT_DATA_DIR/landing/ until SIGINT or SIGTERM; then flush and exit 0.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", required=True, help="/dev/ttyUSB0, /dev/ttyACM0, socket://host:port, rfc2217://..., loop://")
    p.add_argument("--baud", type=int, default=9600, help=f"baud rate (default 9600; one of {', '.join(map(str, SUPPORTED_BAUD_RATES))})")
    p.add_argument("--format", default="csv", choices=LINE_FORMATS, help="line format (default csv)")
    p.add_argument("--columns", help=f"CSV column order (default {','.join(DEFAULT_COLUMNS)})")
    p.add_argument("--delimiter", default=",", help="CSV field separator (default ,)")
    p.add_argument("--sensor-id", help="sensor id for lines that carry none (required for --format value)")
    p.add_argument("--metric", choices=METRICS, help="metric of a bare value (--format value)")
    p.add_argument("--scale", type=float, default=1.0, help="value = raw * scale + offset (--format value)")
    p.add_argument("--offset", type=float, default=0.0, help="see --scale")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=KEY",
                   help="the device's key for a field in kv/json lines, e.g. temperature=t (repeatable)")
    p.add_argument("--ts-unit", default="s", choices=tuple(TS_UNITS), help="unit of numeric device timestamps (default s)")
    p.add_argument("--buffer-size", type=int, default=100_000, help="lines held between reader and writer (default 100000)")
    p.add_argument("--drop-policy", default=DropPolicy.DROP_OLDEST.value, choices=[d.value for d in DropPolicy],
                   help="what a full buffer does (default drop_oldest)")
    p.add_argument("--rotate-seconds", type=float, default=5.0, help="seconds between landing files (default 5)")
    p.add_argument("--metrics-interval", type=float, default=10.0, help="seconds between metrics log lines (default 10)")
    p.add_argument("--wait", action="store_true", help="if the port is missing at start, wait for it (with backoff)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until signalled)")
    p.add_argument("--stream", help="landing sub-directory (default derived from the port, e.g. serial-ttyACM0)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> CaptureConfig:
    try:
        keys = mapped_keys(args.map)
        if keys and args.format not in ("kv", "json"):
            raise ValueError("--map renames keys of kv and json lines; for csv use --columns")
        fmt_kwargs: dict = dict(kind=args.format, delimiter=args.delimiter, sensor_id=args.sensor_id, keys=keys,
                                ts_unit=args.ts_unit)  # fmt: skip
        if args.columns:
            if args.format != "csv":
                raise ValueError("--columns applies to --format csv")
            fmt_kwargs["columns"] = tuple(c.strip() for c in args.columns.split(","))
        if args.format == "value":
            if args.metric is None:
                raise ValueError("--format value needs --metric (one of " + ", ".join(METRICS) + ")")
            fmt_kwargs.update(metric=args.metric, scale=args.scale, offset=args.offset)
        elif args.metric is not None or args.scale != 1.0 or args.offset != 0.0:
            raise ValueError("--metric, --scale and --offset apply to --format value")
        return CaptureConfig(
            port=args.port,
            baud=args.baud,
            line_format=LineFormat(**fmt_kwargs),
            buffer_size=args.buffer_size,
            drop_policy=args.drop_policy,
            rotate_seconds=args.rotate_seconds,
            metrics_interval=args.metrics_interval,
            wait_for_port=args.wait,
            stream=args.stream,
        )
    except (ValueError, PortError) as exc:
        raise CliError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.duration is not None and not args.duration > 0:
        raise CliError(f"--duration {args.duration!r} is not valid; expected a positive number of seconds")
    capture = Capture(config, landing_dir())

    def on_signal(signum, frame) -> None:
        capture.stop()

    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        # pyarrow otherwise installs its own SIGINT handler during long operations and cancels
        # them (ArrowCancelled), which would abort the flush a signal is meant to start.
        pa.enable_signal_handlers(False)
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    timer = None
    if args.duration is not None:
        timer = threading.Timer(args.duration, capture.stop)
        timer.daemon = True
        timer.start()
    try:
        stats = capture.run()
    except PortError as exc:
        hint = "; or pass --wait to wait for it" if exc.kind in ("not_found", "refused") else ""
        raise CliError(f"{exc}{hint}") from exc
    finally:
        if timer is not None:
            timer.cancel()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(
        f"captured {stats.spooled} readings into {stats.files} files under {capture.landing_root / capture.stream} "
        f"({stats.lines} lines, {stats.rejected} rejected, {stats.dropped} dropped, {stats.disconnects} disconnects)"
    )
    return 0
