"""Screenshots of the Dagster UI for a reviewer: runs, an anomalies partition, asset health.

On a fresh temporary data root this starts ``iot-platform ui`` on a free port,
backfills two days with ``iot-platform backfill``, then photographs pages with
Debian's headless Chromium (``chromium --screenshot``; no browser download,
no driver) and saves the PNGs into OUT_DIR:

    01_runs.png               Runs: the backfill's run with its partition-range tags
    02_anomalies_partition.png  the `anomalies` asset, its partitions, one day selected
    03_anomalies_overview.png the `anomalies` asset's overview (latest materialization, plot, checks)
    04_asset_health.png       the asset catalog with each asset's health and freshness

    python benchmarks/ui_screenshots.py benchmarks/out/screenshots
    python benchmarks/ui_screenshots.py OUT --start 2024-01-01 --end 2024-01-02 --keep

Needs `chromium` (as root, the script runs `apt-get install -y chromium
chromium-driver` when it is missing). It is a script, not a test: it takes a
minute or two and its output is for people to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(name: str) -> str:
    """A console script of this virtualenv (iot-platform), found even when it is not activated."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        sys.exit(f"Error: `{name}` not found; run `pip install -e .` in this virtualenv")
    return found


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    line = "apt-get install -y chromium chromium-driver"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"Error: chromium is not installed; run `{line}` as root")
    print(f"installing chromium: {line}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env)
    return shutil.which("chromium") or sys.exit("Error: chromium still not found after apt-get")


def graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for_ui(base: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until the code location has loaded (the server answers before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"Error: iot-platform ui exited with code {proc.returncode}")
        try:
            if graphql(base, "{ assetNodes { id } }").get("data", {}).get("assetNodes"):
                return
        except OSError:
            pass
        time.sleep(1)
    sys.exit(f"Error: the UI at {base} did not load the code location in {timeout:.0f} s")


def screenshot(chromium: str, url: str, path: Path, profile: Path, wait_ms: int, height: int) -> None:
    """One PNG of ``url``; the virtual-time budget lets the single-page app fetch and draw first."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--window-size=1600,{height}", f"--user-data-dir={profile}",
           f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not path.is_file():
        sys.exit(f"Error: chromium failed on {url} ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    print(f"  {path}  <- {url}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where the PNGs go (created)")
    parser.add_argument("--start", default="2024-01-01", help="first day to backfill (default 2024-01-01)")
    parser.add_argument("--end", default="2024-01-02", help="last day to backfill (default 2024-01-02)")
    parser.add_argument("--wait-ms", type=int, default=20000, help="how long each page may load (virtual ms)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root and print its path")
    args = parser.parse_args(argv)

    chromium = ensure_chromium()
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="iot-ui-screens-"))
    env = dict(os.environ, IOT_DATA_DIR=str(work / "data"))
    env.pop("DAGSTER_HOME", None)  # the data root's own Dagster home, shared by ui and backfill
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cli = command("iot-platform")
    log = open(work / "ui.log", "w")
    ui = subprocess.Popen([cli, "ui", "--port", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        print(f"UI {base} on data root {work / 'data'} (console: {work / 'ui.log'})", flush=True)
        wait_for_ui(base, ui)
        subprocess.run([cli, "backfill", args.start, args.end], cwd=PROJECT_ROOT, env=env, check=True)
        day = args.end
        partition_page = "/assets/anomalies?" + urllib.parse.urlencode({"view": "partitions", "partition": day})
        pages = {  # name: (page, window height): the partition's metadata and plot are long
            "01_runs.png": ("/runs", 1000),
            "02_anomalies_partition.png": (partition_page, 1800),
            "03_anomalies_overview.png": ("/assets/anomalies?view=overview", 1000),
            "04_asset_health.png": ("/assets", 1000),
        }
        for name, (page, height) in pages.items():
            screenshot(chromium, base + page, out / name, work / "chromium-profile", args.wait_ms, height)
    finally:
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(60)
        except subprocess.TimeoutExpired:
            ui.kill()
        log.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(pages)} screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
