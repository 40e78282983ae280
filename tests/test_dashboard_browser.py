"""The dashboard in a real headless browser (Debian's chromium via chromedriver, driven by selenium):
the page loads and shows the simulated sensors, and an anomaly injected into the lake appears on the
chart and its sensor's tile turns red at the next refresh, without a page reload."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import threading
import time

import dagster as dg
import pyarrow as pa
import pytest

from iot_platform.core.schemas import ANOMALIES
from iot_platform.dashboard.app import create_app
from iot_platform.definitions import defs
from iot_platform.io.dashboard_data import DashboardData
from iot_platform.io.lake import read_metadata

DAY = dt.date(2024, 1, 3)
INSTALL = "apt-get install -y chromium chromium-driver"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1800"]  # fmt: skip


@pytest.fixture(scope="session")
def chromium() -> None:
    """Debian's chromium and chromedriver; installed with apt-get when missing and root, never downloaded."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"needs Debian's chromium: {INSTALL}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env, stdout=subprocess.DEVNULL)


def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


class Served:
    """The Dash app on a real HTTP server (werkzeug, threaded) on a free port of 127.0.0.1."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app.server, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()


def wait_for(fn, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


TILES_JS = "return Array.from(document.querySelectorAll('.tile')).map(t => t.textContent.split('\\n').slice(0, 2));"
CHART_ANOMALY_TEXTS = """
const g = document.querySelector('#chart .js-plotly-plot');
if (!g || !g.data) return null;
return g.data.filter(t => t.name === 'anomalies').flatMap(t => t.text || []);
"""


def test_page_shows_the_fleet_and_an_injected_anomaly_appears_without_reload(chromium, tmp_path, instance, resources, lake, small_fleet):
    result = dg.materialize([*defs.assets], instance=instance, resources=resources, selection=dg.AssetSelection.groups("lake"),
                            partition_key=DAY.isoformat())  # fmt: skip
    assert result.success
    sensors = small_fleet.sensor_ids
    newest = DashboardData(lake.root).last_readings()
    newest_us = max(newest["last_ts"].to_pylist())
    # the wall clock of the app is the lake's newest reading plus 5 s: a live fleet, not a stale one
    app = create_app(lake.root, refresh_s=1.0, clock=lambda: newest_us + 5_000_000)
    served = Served(app)
    driver = browser(tmp_path)
    try:
        driver.get(served.url)
        tiles = lambda: driver.execute_script(TILES_JS) or []  # noqa: E731  (read in one go: tiles re-render every refresh)
        wait_for(lambda: len(tiles()) == len(sensors), "one tile per sensor")
        assert [name for name, _ in tiles()] == sensors
        target = sensors[1]
        tile_state = lambda: dict(tiles()).get(target)  # noqa: E731
        assert tile_state() in ("ok", "warning", "critical")
        before = wait_for(lambda: driver.execute_script(CHART_ANOMALY_TEXTS) is not None and (driver.execute_script(CHART_ANOMALY_TEXTS) or ["none"]), "the chart")
        assert not any("INJECTED" in t for t in before)
        driver.execute_script("window.__no_reload = 42;")

        # pick the target sensor by clicking its tile
        driver.execute_script("document.getElementById(arguments[0]).click();", f"tile-{target}")
        wait_for(lambda: driver.execute_script("const g=document.querySelector('#chart .js-plotly-plot'); return g && g.layout && g.layout.title && g.layout.title.text") == target,
                 "the chart to show the clicked sensor")  # fmt: skip

        # inject a critical anomaly ending 10 s before the newest reading
        part = lake.files("anomalies", DAY)[0]
        meta = read_metadata(part)
        current = lake.read("anomalies", [DAY])
        ts = dt.datetime.fromtimestamp((newest_us - 70_000_000) / 1e6, dt.UTC)
        end = dt.datetime.fromtimestamp((newest_us - 10_000_000) / 1e6, dt.UTC)
        injected = pa.Table.from_pylist([dict(
            anomaly_id="injected1", sensor_id=target, anomaly_type="spike", severity="critical", metric="temperature",
            start_ts=ts, end_ts=end, value=55.0, threshold=30.0, score=12.5, n_points=3, systemic_id=None, message="INJECTED-FAULT",
        )], schema=ANOMALIES)  # fmt: skip
        lake.replace_partition("anomalies", DAY, pa.concat_tables([current, injected]), metadata=meta)

        texts = wait_for(lambda: [t for t in (driver.execute_script(CHART_ANOMALY_TEXTS) or []) if "INJECTED" in t], "the injected anomaly on the chart")
        assert texts == ["spike (critical), score 12.50<br>INJECTED-FAULT"]
        wait_for(lambda: tile_state() == "critical", "the tile to turn critical")
        assert driver.execute_script("return window.__no_reload;") == 42  # the page was never reloaded
        fresh = driver.find_element("id", "newest").text
        assert fresh.startswith(f"newest reading {dt.datetime.fromtimestamp(newest_us / 1e6, dt.UTC):%Y-%m-%d %H:%M:%S} UTC (5 s ago)")
    finally:
        driver.quit()
        served.close()
