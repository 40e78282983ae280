"""Shared fixtures: a tmp data root, a small simulated fleet, a real Dagster instance."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import dagster as dg
import pytest

from iot_platform.core.simulator import FleetParams
from iot_platform.io.lake import Lake
from iot_platform.orchestration.resources import ClockResource, DetectionResource, FleetResource, LakeResource

# Real servers the session starts on demand (each only when a test asks for its fixture).
pytest_plugins = ["servers.s3", "servers.postgres"]

# Tests start real processes and signal them (Ctrl-C, SIGTERM): those must start with the default
# dispositions. A runner may hand this session some signals ignored (a shell's background job ignores
# SIGINT and SIGQUIT, some harnesses SIGTERM and SIGHUP too), and an ignored signal stays ignored in
# every child: an `iot-platform dashboard` then never stopped on SIGTERM (found orphaned, SigIgn 0x1005007).
for _sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler if _sig == signal.SIGINT else signal.SIG_DFL)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2024, 1, 3)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("IOT_DATA_DIR", str(root))
    return root


@pytest.fixture
def lake(data_dir: Path) -> Lake:
    return Lake(data_dir)


@pytest.fixture
def small_fleet() -> FleetParams:
    """Three sensors every 10 s: realistic shape, test-sized volume."""
    return FleetParams(seed=7, n_sensors=3, sample_interval_s=10.0)


@pytest.fixture
def resources(data_dir: Path, small_fleet: FleetParams) -> dict:
    return {
        "lake": LakeResource(data_dir=str(data_dir)),
        "fleet": FleetResource(
            seed=small_fleet.seed, n_sensors=small_fleet.n_sensors, sample_interval_s=small_fleet.sample_interval_s
        ),
        "detection": DetectionResource(),
        "clock": ClockResource(),
    }


@pytest.fixture
def range_run(data_dir: Path) -> tuple[dict, dict]:
    """Resources and tags of a run over 2024-01-02...2024-01-04 of four sensors every 10 s."""
    resources = {
        "lake": LakeResource(data_dir=str(data_dir)),
        "fleet": FleetResource(n_sensors=4, sample_interval_s=10.0),
        "detection": DetectionResource(),
        "clock": ClockResource(),
    }
    return resources, {"dagster/asset_partition_range_start": "2024-01-02", "dagster/asset_partition_range_end": "2024-01-04"}


@pytest.fixture
def instance(tmp_path: Path):
    """A real, persistent-on-disk Dagster instance in a tmp DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def pytest_configure(config):
    """The Dagster warnings the project has checked are silenced in tests too.

    pytest restores the warning filters after loading each module, which drops the
    ones iot_platform.orchestration installs on import; the list itself lives there.
    """
    from iot_platform.orchestration import CHECKED_WARNINGS

    for category, message, _why in CHECKED_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__module__}.{category.__qualname__}")


# -- the emulated board's toolchain ----------------------------------------------------


def pytest_collection_modifyitems(session, config, items):
    """Install the Debian packages the emulator tests need, when they are selected and missing.

    So the README's single test command passes on a fresh machine. Only as root
    with apt-get; otherwise (or if apt-get fails) the emulator tests are skipped
    with the exact ``apt-get install`` line to run (see emulated_board.require_board).
    """
    import os
    import shutil
    import subprocess

    from emulated_board import DEBIAN_PACKAGES, missing_tools

    if not any(item.get_closest_marker("emulator") for item in items):
        return
    if not missing_tools() or os.environ.get("IOT_SKIP_EMULATOR") == "1":
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"\ninstalling {' '.join(DEBIAN_PACKAGES)} for the emulator tests ...", flush=True)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES],
    ):
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            print(f"{' '.join(cmd)} failed ({last[0]}); the emulator tests will be skipped", flush=True)
            return
