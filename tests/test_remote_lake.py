"""The lake on a real S3-compatible server (SeaweedFS): Delta Lake commits, the local lake's guarantees."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core.schemas import READINGS
from iot_platform.io.objstore import lake_store_from_env
from iot_platform.io.lake import Lake

pytestmark = pytest.mark.objectstore

DAY = dt.date(2024, 1, 3)
T0 = 1_704_240_000_000_000  # 2024-01-03T00:00:00Z in microseconds


def readings(n: int, seq: int, sensor: str = "s-1", start: int = 0) -> pa.Table:
    """``n`` readings of one sensor, 1 s apart from ``start`` s after midnight; ``seq`` marks the writer."""
    ts = pa.array([T0 + (start + i) * 1_000_000 for i in range(n)], pa.timestamp("us", tz="UTC"))
    cols = {f.name: pa.nulls(n, f.type) for f in READINGS}
    cols.update(sensor_id=pa.array([sensor] * n), ts=ts, seq=pa.array([seq] * n, pa.int64()),
                source=pa.array(["test"] * n))  # fmt: skip
    return pa.table(cols, schema=READINGS)


def object_keys(s3_server, url: str, table: str) -> set[str]:
    prefix = url.split("/", 3)[3] + f"/{table}/"
    pages = s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=s3_server.bucket, Prefix=prefix)
    return {o["Key"].removeprefix(prefix) for page in pages for o in page.get("Contents", [])}


def live_files(lake: Lake, table: str) -> set[str]:
    t = lake.delta(table)
    return {u.split(f"/{table}/", 1)[1] for u in t.file_uris()}


def run_writer(url: str, code: str) -> subprocess.Popen:
    """A writer in its own process (the lake's env: IOT_LAKE_URL and AWS_*)."""
    env = dict(os.environ, IOT_LAKE_URL=url)
    prelude = "import datetime as dt, os, signal, sys\nsys.path.insert(0, %r)\nfrom test_remote_lake import *\n" % os.path.dirname(__file__)
    prelude += "import tempfile\nfrom pathlib import Path\nfrom iot_platform.io.objstore import lake_store_from_env\nfrom iot_platform.io.lake import Lake, LakeConflict\n"
    # each writer process is a machine of its own: its own data root, so no flock is shared
    prelude += "def machine(): return Lake(Path(tempfile.mkdtemp()), lake_store_from_env())\n"
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def remote(s3_lake_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Lake:
    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url)
    return Lake(tmp_path / "machine", lake_store_from_env())


def test_lake_url_from_the_environment(s3_lake_url, s3_server, monkeypatch):
    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url + "/")
    store = lake_store_from_env()
    assert (store.bucket, store.endpoint, store.access_key, store.region) == (
        s3_server.bucket, s3_server.endpoint, s3_server.access_key, s3_server.region)  # fmt: skip
    assert store.url == s3_lake_url
    assert store.table_url("readings") == s3_lake_url + "/readings"


def test_replace_partition_is_atomic_for_a_reader(remote):
    remote.replace_partition("readings", DAY, readings(300, seq=0))
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for k in range(1, 7):  # sizes 300 + 100k rows, each writer's rows marked by its seq
                remote.replace_partition("readings", DAY, [readings(150, k), readings(150 + 100 * k, k, start=150)])
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            stop.set()

    seen: set[tuple[int, tuple[int, ...]]] = set()
    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        t = remote.read("readings", [DAY], columns=["seq"])
        seen.add((t.num_rows, tuple(sorted(set(t["seq"].to_pylist())))))
    thread.join()
    assert errors == []
    allowed = {(300, (0,))} | {(300 + 100 * k, (k,)) for k in range(1, 7)}
    assert seen <= allowed  # never two writers' rows, never part of one
    assert remote.read("readings", [DAY], columns=["seq"]).num_rows == 900


def test_a_part_commits_exactly_once(remote):
    remote.replace_partition("readings", DAY, readings(10, seq=0))
    assert remote.append_part("readings", DAY, 1, readings(5, seq=1, start=100)) is True
    assert remote.append_part("readings", DAY, 1, readings(5, seq=1, start=100)) is False  # the retry
    assert remote.append_part("readings", DAY, 2, readings(5, seq=2, start=200)) is True
    t = remote.read("readings", [DAY], columns=["seq"])
    assert sorted(pc.value_counts(t["seq"]).to_pylist(), key=lambda d: d["values"]) == [
        {"values": 0, "counts": 10}, {"values": 1, "counts": 5}, {"values": 2, "counts": 5}]  # fmt: skip
    assert remote.committed_seq("readings") == 2
    assert remote.days("readings") == [DAY]


def test_killed_writer_leaves_nothing_visible_and_vacuum_removes_its_files(remote, s3_lake_url, s3_server):
    remote.replace_partition("readings", DAY, readings(50, seq=0))
    before = live_files(remote, "readings")
    proc = run_writer(s3_lake_url, """
        lake = machine()
        def die(*a, **kw):  # the new file is in the store by now: die before the commit
            os.kill(os.getpid(), signal.SIGKILL)
        Lake.commit = die
        lake.replace_partition("readings", DAY, [readings(20_000, seq=9, sensor=f"s-{i}") for i in range(3)])
    """)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, err
    orphans = {k for k in object_keys(s3_server, s3_lake_url, "readings") if not k.startswith("_delta_log/")} - before
    assert orphans  # the killed writer did upload data files
    assert remote.read("readings", [DAY], columns=["seq"])["seq"].to_pylist() == [0] * 50
    removed = remote.vacuum("readings", grace_hours=0)
    assert {r.split("readings/", 1)[-1] for r in removed} == orphans
    assert {k for k in object_keys(s3_server, s3_lake_url, "readings") if not k.startswith("_delta_log/")} == before


def test_two_writers_of_one_partition_one_wins_the_other_retries(remote, s3_lake_url):
    remote.replace_partition("readings", DAY, readings(10, seq=0))
    code = """
        lake = machine()
        for attempt in range(8):  # a replace that lost the race recomputes (here: the same rows) and tries again
            try:
                lake.replace_partition("readings", DAY, readings(1000 + %d, seq=%d))
                break
            except LakeConflict:
                continue
    """
    procs = [run_writer(s3_lake_url, code % (k, k)) for k in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    t = remote.read("readings", [DAY], columns=["seq"])
    counts = {d["values"]: d["counts"] for d in pc.value_counts(t["seq"]).to_pylist()}
    assert counts in ({1: 1001}, {2: 1002})  # the partition is one writer's, whole
    history = remote.delta("readings").history()
    # neither replace was lost: both committed (the loser of the race after its retry), the later one shows
    assert [h["operation"] for h in history] == ["WRITE", "WRITE", "WRITE", "CREATE TABLE"]
    assert remote.version("readings") == 3


def test_two_writers_appending_to_one_partition_lose_nothing(remote, s3_lake_url):
    remote.replace_partition("readings", DAY, readings(10, seq=0))
    code = """
        lake = machine()
        for b in range(1, 4):
            lake.append_part("readings", DAY, b, readings(7, seq=10 * %d + b, sensor="m-%d"), app_id="writer-%d")
    """
    procs = [run_writer(s3_lake_url, code % (k, k, k)) for k in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    t = remote.read("readings", [DAY], columns=["seq"])
    counts = {d["values"]: d["counts"] for d in pc.value_counts(t["seq"]).to_pylist()}
    assert counts == {0: 10, 11: 7, 12: 7, 13: 7, 21: 7, 22: 7, 23: 7}
    assert (remote.committed_seq("readings", "writer-1"), remote.committed_seq("readings", "writer-2")) == (3, 3)


def test_the_same_batch_racing_itself_commits_once(remote, s3_lake_url):
    remote.replace_partition("readings", DAY, readings(10, seq=0))
    code = """
        lake = machine()
        print(lake.append_part("readings", DAY, 5, readings(100, seq=5, start=500)))
    """
    procs = [run_writer(s3_lake_url, code) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out.strip())
    assert sorted(outs) == ["False", "True"]
    assert remote.read("readings", [DAY], columns=["seq"])["seq"].to_pylist().count(5) == 100
