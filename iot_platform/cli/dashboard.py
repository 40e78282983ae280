"""``iot-platform dashboard``: the live dashboard at http://127.0.0.1:8050 (read-only over the lake)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from iot_platform.settings import data_dir


def run(args: argparse.Namespace) -> int:
    from iot_platform.cli import CliError
    from iot_platform.dashboard.app import create_app
    from iot_platform.io.alerts import load_config

    if args.refresh <= 0:
        raise CliError(f"--refresh {args.refresh} is invalid; expected a number of seconds > 0")
    root = Path(args.data_dir).resolve() if args.data_dir else data_dir()
    groups = load_config(root).groups  # the alert configuration's sensor groups, if any
    app = create_app(root, refresh_s=args.refresh, groups=groups)
    print(f"Data root: {root}\nDashboard: http://{args.host}:{args.port} (refresh every {args.refresh:g} s)", flush=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app.run(host=args.host, port=args.port, debug=False)
    return 0


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="open the live dashboard: the fleet's state, sensor charts, freshness, capture health")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS", help="refresh interval (default 5)")
    p.add_argument("--data-dir", help="the data root (default $IOT_DATA_DIR or ./data)")
    p.set_defaults(func=run)
