"""The lake's integrity guarantees with its tables on a real S3-compatible server (SeaweedFS).

The same :class:`Lake` as the local tests, with ``IOT_LAKE_URL=s3://...``: the
micro-batch tests of test_microbatch_ingest.py and test_microbatch_rerun.py run
here again over the object store (this module's ``lake`` fixture), plus a batch
SIGKILLed in the middle of its commit and retried, a backfill racing
micro-batches, a replace that lost a race to a writer on another machine, and
`iot-platform sql` and the models over what the micro-batches wrote.
0 lost, 0 duplicated, 0 torn.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_microbatch_ingest import (  # noqa: F401 - collected here again, over the object store
    D0,
    DAY,
    H,
    S,
    _batch,
    _day,
    _expected,
    test_a_backfill_of_today_racing_a_batch_duplicates_nothing,
    test_a_batch_that_fails_before_its_commit_is_redone_by_the_next,
    test_a_day_of_micro_batches_equals_the_day_backfilled,
    test_a_file_imported_again_later_adds_nothing,
    test_a_repeated_batch_ingests_nothing_twice,
    test_landing_files_are_ingested_once_by_event_day_and_kept_in_the_raw_layer,
)
from test_microbatch_rerun import (  # noqa: F401
    test_re_running_a_committed_batch_keeps_its_rows_and_adds_only_what_is_new,
    test_re_running_a_committed_import_batch_without_a_fleet_loses_nothing,
)
from test_pass_audits import PASSED

from iot_platform.cli import main
from iot_platform.io.chain import build_chain_days, derived_inputs
from iot_platform.io.downstream import DownstreamSettings, build_day, compute_day, make_update_downstream
from iot_platform.io.lake import Lake, LakeConflict
from iot_platform.io.microbatch import run_micro_batch
from iot_platform.io.objstore import parse_lake_url
from iot_platform.io.pass_audits import table_files

pytestmark = pytest.mark.objectstore
FIRST = dt.date(2024, 1, 1)


@pytest.fixture
def lake(data_dir: Path, s3_lake_url: str, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url)
    return Lake(data_dir, parse_lake_url(s3_lake_url, os.environ))


def _batches(lake: Lake, fleet, seconds: list[int]) -> None:
    update = make_update_downstream(DownstreamSettings(fleet=fleet), FIRST)
    for s in seconds:
        run_micro_batch(lake, f"mb-{s}", D0 + s * S, fleet=fleet, landing=lake.root / "landing", first_day=FIRST, downstream=update)


def _sorted(t: pa.Table, *keys: str) -> pa.Table:
    return t.sort_by([(k, "ascending") for k in keys])


def test_the_tables_are_in_the_store_and_nothing_of_them_on_disk(lake: Lake, small_fleet, s3_server):
    _batches(lake, small_fleet, [600])
    assert not (lake.root / "lake" / "readings").exists()
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=lake.lake_dir.key.split("/", 1)[1])["Contents"]}
    prefix = lake.lake_dir.key.split("/", 1)[1]
    assert f"{prefix}/readings/_delta_log/00000000000000000000.json" in keys
    assert [f.name for f in lake.files("readings", DAY)] == ["part-mb-600.parquet"]


def test_a_batch_killed_in_the_middle_of_its_commit_is_applied_once(lake: Lake, small_fleet, s3_lake_url: str):
    """SIGKILL after the commit record and the first table's commit, before the others: the next
    batch applies the rest of the plan, and a retry with the same batch id adds nothing twice."""
    _batches(lake, small_fleet, [600])
    script = textwrap.dedent(
        f"""
        import datetime as dt, os, time
        from iot_platform.core.simulator import FleetParams
        from iot_platform.io.downstream import DownstreamSettings, make_update_downstream
        from iot_platform.io.lake import Lake
        from iot_platform.io.microbatch import run_micro_batch
        from iot_platform.io.objstore import parse_lake_url
        real = Lake.commit
        def commit(self, table, *a, seq=None, **kw):
            real(self, table, *a, seq=seq, **kw)
            if seq is not None:  # the plan's first table is committed: die before the others
                print("half applied", table, flush=True)
                time.sleep(60)
        Lake.commit = commit
        lake = Lake({str(lake.root)!r}, parse_lake_url({s3_lake_url!r}, os.environ))
        fleet = FleetParams(seed=7, n_sensors=3, sample_interval_s=10.0)
        run_micro_batch(lake, "mb-x", {D0 + 1200 * S}, fleet=fleet, landing=lake.root / "landing",
                        first_day=dt.date(2024, 1, 1), downstream=make_update_downstream(DownstreamSettings(fleet=fleet), dt.date(2024, 1, 1)))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("half applied anomaly_points")  # tables are applied in name order
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lake.committed_seq("readings") < lake.committed_seq("anomaly_points")  # readings not applied yet
    _batches(lake, small_fleet, [1200])  # Dagster's retry: same batch id, same end
    _batches(lake, small_fleet, [1800])
    want = _expected(small_fleet).filter(pc.less(pc.field("ts"), pa.scalar(D0 + 1800 * S, pa.int64()).cast(pa.timestamp("us", tz="UTC"))))
    assert _day(lake).equals(want)
    ref = compute_day(lake, DAY, DownstreamSettings(fleet=small_fleet), now_us=D0 + 1800 * S)
    ws = _sorted(lake.read("window_stats", [DAY]), "sensor_id", "window_end")
    assert ws.equals(_sorted(ref.window_stats, "sensor_id", "window_end"))
    points = _sorted(lake.read("anomaly_points", [DAY]), "sensor_id", "anomaly_type", "ts")
    assert points.equals(_sorted(ref.points, "sensor_id", "anomaly_type", "ts"))


def test_a_backfill_racing_micro_batches_loses_nothing(lake: Lake, small_fleet):
    """A whole-day build of the derived tables between micro-batches, while their parts are staged."""
    settings = DownstreamSettings(fleet=small_fleet)
    _batches(lake, small_fleet, [600, 630])
    build_day(lake, DAY, settings, now_us=D0 + 630 * S)
    _batches(lake, small_fleet, [660, 690])
    build_day(lake, DAY, settings, now_us=D0 + 690 * S)
    _batches(lake, small_fleet, [720])
    ref = compute_day(lake, DAY, settings, now_us=D0 + 720 * S)
    ws = lake.read("window_stats", [DAY])
    assert _sorted(ws, "sensor_id", "window_end").equals(_sorted(ref.window_stats, "sensor_id", "window_end"))
    key = pc.binary_join_element_wise(ws["sensor_id"], ws["window_end"].cast("string"), "|")
    assert pc.count_distinct(key).as_py() == ws.num_rows


def test_a_replace_that_lost_a_race_to_another_machine_raises_instead_of_dropping_its_part(
    lake: Lake, s3_lake_url: str, tmp_path: Path
):
    """Two machines share no flock: a part committed by the other one while this replace was
    computing makes the replace fail with LakeConflict; recomputed, the replace then holds the part."""
    other = Lake(tmp_path / "other-machine", parse_lake_url(s3_lake_url, os.environ))
    rows = lambda vals, start: pa.table({  # noqa: E731
        "sensor_id": ["s1"] * len(vals), "ts": pa.array(range(start, start + len(vals)), pa.timestamp("us", tz="UTC")),
        "temperature": vals,
    })  # fmt: skip
    lake.replace_partition("readings", DAY, rows([1.0, 2.0], 0))

    def computed_meanwhile():
        other.write_part("readings", DAY, "mb-other", rows([3.0], 10))  # commits on the other machine
        yield rows([1.0, 2.0], 0)

    with pytest.raises(LakeConflict, match=r"readings 2024-01-03 changed while it was being replaced; recompute it"):
        lake.replace_partition("readings", DAY, computed_meanwhile())
    assert sorted(lake.read("readings", [DAY])["temperature"].to_pylist()) == [1.0, 2.0, 3.0]  # the part survived
    # the caller recomputes from the new snapshot
    lake.replace_partition("readings", DAY, lake.read("readings", [DAY]))
    assert sorted(lake.read("readings", [DAY])["temperature"].to_pylist()) == [1.0, 2.0, 3.0]
    assert [f.name[:5] for f in lake.files("readings", DAY)] == ["data-"]


def test_sql_and_models_read_what_the_micro_batches_wrote(lake: Lake, small_fleet, capsys):
    _batches(lake, small_fleet, [600, 630, 660])
    n = lake.read("readings", [DAY]).num_rows
    assert main(["sql", "--format", "csv", "SELECT count(*) AS n, count(DISTINCT sensor_id) AS s FROM readings"]) == 0
    assert capsys.readouterr().out == f"n,s\n{n},3\n"
    windows = lake.read("window_stats", [DAY]).num_rows
    assert main(["sql", "--format", "json", "SELECT sum(n_windows) AS n FROM (SELECT count(*) AS n_windows FROM window_stats)"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": windows}]
    assert main(["sql", "--format", "csv", "SELECT count(*) AS n FROM sensor_hourly WHERE date = DATE '2024-01-03'"]) == 0
    assert capsys.readouterr().out == "n\n3\n"


def test_two_machines_committing_a_micro_batch_at_once_commit_one(lake: Lake, s3_lake_url: str, tmp_path: Path):
    """No flock is shared across machines: of two batches that loaded the same state, the second
    commit is refused (its parts stay uncommitted, the next batch redoes them), never both."""
    from iot_platform.io.commit import PartInfo, commit_state, load_state

    other = Lake(tmp_path / "other-machine", parse_lake_url(s3_lake_url, os.environ))
    mine, theirs = load_state(lake), load_state(other)
    mine.day_parts("readings", DAY)["part-a.parquet"] = PartInfo(ts_min=1, ts_max=2)
    theirs.day_parts("readings", DAY)["part-b.parquet"] = PartInfo(ts_min=3, ts_max=4)
    commit_state(lake, mine)
    with pytest.raises(LakeConflict, match=r"micro-batch commit 1: the lake's last commit is 1, another micro-batch committed meanwhile"):
        commit_state(other, theirs)
    seq, record, _, _ = lake.last_record()
    assert (seq, list(json.loads(record)["parts"]["readings"]["2024-01-03"])) == (1, ["part-a.parquet"])


def test_a_chain_pass_vouches_for_the_days_it_wrote_alone(lake: Lake, small_fleet):
    settings = DownstreamSettings(fleet=small_fleet)
    days = [FIRST, FIRST + dt.timedelta(days=1)]
    built = list(build_chain_days(lake, small_fleet, days, settings, now_us=lambda: None))
    for c in built:
        assert c.audited.results == PASSED
        assert c.audited.files == table_files(lake, c.stats.day, ("readings", "fault_labels"))
        assert c.inputs == derived_inputs(lake, c.stats.day, settings)
        assert c.written["anomalies"] == table_files(lake, c.stats.day, ("anomalies",))
