"""Screenshot a partition's anomaly plot in the real Dagster UI, in a real headless Chromium.

    python benchmarks/asset_plot_screenshot.py [--out docs/img] [--keep]

What it does, end to end, with nothing mocked:
1. a temp DAGSTER_HOME (telemetry off) and a temp IOT_DATA_DIR; a 3-day range
   backfill of readings, fault_labels, window_stats and anomalies (3 sensors)
   recorded in that instance, as one single-run backfill;
2. `dagster-webserver -w workspace.yaml` on a free port of 127.0.0.1;
3. Debian's chromium, headless, driven over the DevTools protocol: it opens
   the partitions page of `anomalies` for the middle day, checks that this
   partition's metadata carries its own plot (a PNG that the browser decodes),
   opens it and saves screenshots:
   ``anomalies-partition.png`` (the partition's metadata) and
   ``anomalies-plot.png`` (the plot opened).

Needs chromium (`apt-get install -y chromium`). The DevTools client uses
`websockets`, which dagster-webserver already installs (through uvicorn[standard]). Exits non-zero, with the reason,
if the UI does not show the plot.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAYS = ("2024-01-02", "2024-01-04")
DAY = "2024-01-03"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", "--hide-scrollbars"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"Error: {proc.args[0]} exited with {proc.returncode} before {url} answered")
            if time.monotonic() > deadline:
                sys.exit(f"Error: {url} did not answer in {seconds:.0f} s")
            time.sleep(0.5)


def backfill(home: Path, data: Path) -> None:
    """The range backfill, in a child process bound to the temp instance (as the CLI would record it)."""
    code = f"""
import dagster as dg
from iot_platform.definitions import defs
with dg.DagsterInstance.get() as instance:
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.group_names_by_key and
              set(a.group_names_by_key.values()) == {{"lake"}}]
    r = dg.materialize(assets, instance=instance, resources=defs.resources,
                       tags={{"dagster/asset_partition_range_start": "{DAYS[0]}",
                              "dagster/asset_partition_range_end": "{DAYS[1]}"}})
    assert r.success
"""
    env = dict(os.environ, DAGSTER_HOME=str(home), IOT_DATA_DIR=str(data), IOT_FLEET_SIZE="3")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip


class Page:
    """The smallest DevTools-protocol client: send a command, wait for its answer."""

    def __init__(self, ws):
        self.ws, self.n = ws, 0

    async def send(self, method: str, **params) -> dict:
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expr: str):
        got = await self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return got.get("result", {}).get("value")

    async def wait_for(self, expr: str, what: str, seconds: float = 90):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = await self.js(expr)
            if value:
                return value
            await asyncio.sleep(0.5)
        raise SystemExit(f"Error: the UI did not show {what} in {seconds:.0f} s")

    async def shot(self, path: Path) -> None:
        got = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(got["data"]))
        print(f"wrote {path}")


# Find the row of a metadata key in the UI and the button or link that opens its Markdown.
_OPEN_PLOT = """
(() => {
  const cells = [...document.querySelectorAll('td, div, span')].filter(e => e.textContent.trim() === 'anomaly_plot');
  for (const c of cells) {
    const row = c.closest('tr') || c.parentElement;
    const btn = row && [...row.querySelectorAll('a, button')].find(b => /markdown/i.test(b.textContent));
    if (btn) { btn.click(); return true; }
  }
  return false;
})()
"""
# The "Join the Dagster community" modal of a fresh instance covers the page: skip it.
_SKIP_COMMUNITY_MODAL = """
(() => { const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Skip');
         if (b) b.click(); return !!b; })()
"""
_PLOT_DECODED = """
(() => {
  const imgs = [...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/png;base64,'));
  return imgs.length ? imgs.map(i => [i.alt, i.naturalWidth, i.naturalHeight]) : null;
})()
"""


async def browse(ui_port: int, out: Path, chrome: str, profile: Path) -> None:
    import websockets

    cdp = _free_port()
    proc = subprocess.Popen([chrome, *CHROME_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={cdp}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{cdp}/json/version", proc, 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{cdp}/json/list") as r:
            target = next(t for t in json.loads(r.read()) if t["type"] == "page")
        async with websockets.connect(target["webSocketDebuggerUrl"], max_size=2**26) as ws:
            page = Page(ws)
            await page.send("Page.enable")
            url = f"http://127.0.0.1:{ui_port}/assets/anomalies?view=partitions&partition={DAY}"
            await page.send("Page.navigate", url=url)
            await page.wait_for("document.body && document.body.innerText.includes('anomaly_plot')", "anomaly_plot")
            await page.js(_SKIP_COMMUNITY_MODAL)
            await asyncio.sleep(1.0)  # let the metadata table settle before the picture
            await page.shot(out / "anomalies-partition.png")
            if not await page.js(_OPEN_PLOT):
                raise SystemExit("Error: no 'Show Markdown' control next to anomaly_plot")
            images = await page.wait_for(_PLOT_DECODED, "the plot decoded as a PNG")
            alt, width, height = images[0]
            if f"on {DAY}" not in alt or width < 100:
                raise SystemExit(f"Error: the plot shown is {alt!r} ({width}x{height}), not the one of {DAY}")
            print(f"the UI shows {alt!r}: a {width}x{height} PNG")
            await asyncio.sleep(0.5)
            await page.shot(out / "anomalies-plot.png")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--keep", action="store_true", help="keep the temp instance and data dir")
    args = ap.parse_args()
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if chrome is None:
        sys.exit("Error: chromium not found; install it with: apt-get install -y chromium")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="iot-plot-shot-"))
    home, data = tmp / "home", tmp / "data"
    home.mkdir()
    data.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    try:
        print(f"backfilling {DAYS[0]}..{DAYS[1]} into {tmp} ...", flush=True)
        backfill(home, data)
        port = _free_port()
        env = dict(os.environ, DAGSTER_HOME=str(home), IOT_DATA_DIR=str(data), IOT_FLEET_SIZE="3")
        web = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
                                "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_http(f"http://127.0.0.1:{port}/server_info", web)
            asyncio.run(browse(port, out, chrome, tmp / "chrome"))
        finally:
            web.terminate()
            web.wait(timeout=30)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
