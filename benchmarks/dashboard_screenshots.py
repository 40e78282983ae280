"""Screenshots of `iot-platform dashboard` for reviewers: docs/screenshots/dashboard-*.png.

    python benchmarks/dashboard_screenshots.py                 # builds a demo day first (10 sensors, 1 Hz)
    python benchmarks/dashboard_screenshots.py --data-dir DIR  # an existing data root

A demo day is materialized with the real assets (readings, window_stats, anomalies) into a
temporary data root, and one alerting pass runs so the alarm count is real. For a historical
day (the demo) the app's clock is pinned to the newest reading plus 5 s, so that it shows as live
instead of "stale"; a live data root keeps the real clock. Needs Debian's chromium and chromedriver (`apt-get install -y chromium chromium-driver`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def demo_lake(root: Path, day: str = "2024-01-03", sensors: int = 10) -> None:
    import dagster as dg

    from iot_platform.definitions import defs
    from iot_platform.orchestration.resources import ClockResource, DetectionResource, FleetResource, LakeResource

    res = {"lake": LakeResource(data_dir=str(root)), "fleet": FleetResource(seed=42, n_sensors=sensors, sample_interval_s=1.0),
           "detection": DetectionResource(), "clock": ClockResource()}  # fmt: skip
    with dg.instance_for_test() as inst:
        assert dg.materialize([*defs.assets], instance=inst, resources=res, selection=dg.AssetSelection.groups("lake"),
                              partition_key=day).success  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    from test_dashboard_browser import Served, browser

    from iot_platform.core.alarms import US
    from iot_platform.dashboard.app import create_app
    from iot_platform.io.alerts import load_config, run_pass
    from iot_platform.io.dashboard_data import DashboardData

    tmp = Path(tempfile.mkdtemp(prefix="iot-screens-"))
    root = Path(args.data_dir) if args.data_dir else tmp / "data"
    if not args.data_dir:
        demo_lake(root)
    data = DashboardData(root)
    newest = max(data.last_readings()["last_ts"].to_pylist())
    if not args.data_dir:  # the demo's alarms; a live data root has its own alert sensor
        run_pass(root, load_config(root), newest + 5 * US)
    # the sensor with the most anomaly episodes makes the most telling chart
    eps = data.recent_episodes()
    counts: dict[str, int] = {}
    for s in eps["sensor_id"].to_pylist():
        counts[s] = counts.get(s, 0) + 1
    sensor = max((s for s in counts if not s.startswith("__")), key=lambda s: counts[s])
    live = time.time_ns() // 1000 - newest < 300 * US
    app = create_app(root, refresh_s=5.0, clock=None if live else (lambda: newest + 5 * US))
    served = Served(app)
    driver = browser(tmp)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        driver.set_window_size(1400, 1000)
        driver.get(served.url + f"?sensor={sensor}")
        time.sleep(6)
        driver.save_screenshot(str(out / "dashboard-fleet.png"))
        driver.execute_script("document.querySelector('#span input[value=\"24 h\"]').click();")
        time.sleep(6)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, height + 100)
        time.sleep(2)
        driver.save_screenshot(str(out / "dashboard-sensor-24h.png"))
    finally:
        driver.quit()
        served.close()
    print(f"wrote {out / 'dashboard-fleet.png'} and {out / 'dashboard-sensor-24h.png'} (sensor {sensor})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
