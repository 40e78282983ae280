"""The lake on an object store: Delta Lake (deltalake) vs a manifest on conditional PUTs, measured.

Starts a SeaweedFS S3 server on 127.0.0.1 (the test fixture's, tests/servers/s3.py) and,
for each protocol, on one day of the simulated fleet (100 sensors, 1 s: 8.6 M readings):

* write the day as a new partition; replace it whole;
* append 20 micro-batch parts (30 s of the fleet each), one commit each;
* read the day back in DuckDB (an Arrow dataset of the snapshot's files);
* 2 writer processes appending 10 parts each to the same partition at once: the cost of
  a commit under contention, the retries, and that no row is lost;
* (Delta only, the module that is wired) a 30 s micro-batch of 1,000 sensors appended
  to `readings`, exactly once.

The manifest protocol is a prototype here (not shipped): a partition's state is the
newest ``_manifest/<version>.json``, created with ``If-None-Match: *``.

    python benchmarks/bench_objectstore.py [--sensors 100] [--parts 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers.s3 import run_seaweedfs  # noqa: E402

from iot_platform.core import simulator as sim  # noqa: E402
from iot_platform.core.schemas import READINGS  # noqa: E402
from iot_platform.io.objstore import lake_store_from_env  # noqa: E402
from iot_platform.io.lake import Lake  # noqa: E402

DAY = dt.date(2024, 1, 3)
BATCH_US = 30_000_000


def batch(fleet: sim.FleetParams, i: int) -> pa.Table:
    lo = sim.day_start_us(DAY) + 12 * 3600_000_000 + i * BATCH_US
    return sim.simulate(fleet, lo, lo + BATCH_US).readings


# -- the manifest prototype ------------------------------------------------------------
class Manifest:
    """Partition state = the newest ``<table>/date=D/_manifest/<version:010d>.json`` (create-only PUT)."""

    def __init__(self, store, table: str):
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=store.endpoint, aws_access_key_id=store.access_key,
                               aws_secret_access_key=store.secret_key, region_name=store.region)  # fmt: skip
        self.store, self.fs = store, store.filesystem()
        self.base = f"{table}/date={DAY}"
        self.retries = 0

    def _key(self, rel: str) -> str:
        return f"{self.store.prefix}/{self.base}/{rel}"

    def current(self) -> tuple[int, list[str]]:
        resp = self.s3.list_objects_v2(Bucket=self.store.bucket, Prefix=self._key("_manifest/"))
        keys = sorted(o["Key"] for o in resp.get("Contents", []))
        if not keys:
            return 0, []
        body = self.s3.get_object(Bucket=self.store.bucket, Key=keys[-1])["Body"].read()
        return int(keys[-1].rsplit("/", 1)[1][:10]), json.loads(body)["files"]

    def write_file(self, data) -> str:
        name = f"{uuid.uuid4().hex}.parquet"
        chunks = [data] if isinstance(data, pa.Table) else data
        with self.fs.open_output_stream(f"{self.base}/{name}") as out, pq.ParquetWriter(out, READINGS, compression="zstd") as w:
            for c in chunks:
                w.write_table(c.cast(READINGS))
        return name

    def commit(self, change) -> None:
        import botocore.exceptions

        while True:
            version, files = self.current()
            body = json.dumps({"files": change(files)}).encode()
            try:
                self.s3.put_object(Bucket=self.store.bucket, Key=self._key(f"_manifest/{version + 1:010d}.json"),
                                   Body=body, IfNoneMatch="*")  # fmt: skip
                return
            except botocore.exceptions.ClientError as exc:
                if exc.response["ResponseMetadata"]["HTTPStatusCode"] not in (409, 412):
                    raise
                self.retries += 1

    def replace(self, data) -> None:
        name = self.write_file(data)
        self.commit(lambda files: [name])

    def append(self, data) -> None:
        name = self.write_file(data)
        self.commit(lambda files: files + [name])

    def dataset(self) -> pads.Dataset:
        _, files = self.current()
        return pads.dataset([f"{self.base}/{f}" for f in files], schema=READINGS, filesystem=self.fs, format="parquet")


# -- one protocol, measured -------------------------------------------------------------
def day_chunks(fleet: sim.FleetParams):
    return (c.readings for c in sim.iter_day_chunks(fleet, DAY, 25))


def duck_day(ds: pads.Dataset) -> tuple[float, int, int]:
    con = duckdb.connect()
    con.register("r", ds)
    t0 = time.perf_counter()
    n, sensors = con.sql("SELECT count(*), count(DISTINCT sensor_id) FROM r").fetchall()[0]
    return time.perf_counter() - t0, n, sensors


def _appender(protocol: str, url: str, k: int, n: int, sensors: int, out: mp.Queue) -> None:
    os.environ["IOT_LAKE_URL"] = url
    store = lake_store_from_env()
    fleet = sim.FleetParams(seed=7, n_sensors=sensors)
    lat = []
    m = Manifest(store, "readings") if protocol == "manifest" else None
    d = Lake(Path(tempfile.mkdtemp(prefix="iot-bench-")), store) if protocol == "delta" else None
    for i in range(n):
        t = batch(fleet, 1000 + 100 * k + i)
        t0 = time.perf_counter()
        if m is not None:
            m.append(t)
        else:
            d.append_part("readings", DAY, i, t, app_id=f"writer-{k}")
        lat.append(time.perf_counter() - t0)
    out.put((lat, m.retries if m is not None else None))


def measure(protocol: str, url: str, sensors: int, parts: int) -> dict:
    os.environ["IOT_LAKE_URL"] = url
    store = lake_store_from_env()
    fleet = sim.FleetParams(seed=7, n_sensors=sensors)
    r: dict = {}
    m = Manifest(store, "readings") if protocol == "manifest" else None
    d = Lake(Path(tempfile.mkdtemp(prefix="iot-bench-")), store) if protocol == "delta" else None
    t0 = time.perf_counter()
    (m.replace(day_chunks(fleet)) if m else d.replace_partition("readings", DAY, day_chunks(fleet)))
    r["write_day_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (m.replace(day_chunks(fleet)) if m else d.replace_partition("readings", DAY, day_chunks(fleet)))
    r["replace_partition_s"] = time.perf_counter() - t0
    lat = []
    for i in range(parts):
        t = batch(fleet, i)
        t0 = time.perf_counter()
        (m.append(t) if m else d.append_part("readings", DAY, i, t))
        lat.append(time.perf_counter() - t0)
    r["append_part_median_s"], r["append_parts_total_s"] = statistics.median(lat), sum(lat)
    t0 = time.perf_counter()
    ds = m.dataset() if m else d.dataset("readings")
    r["open_snapshot_s"] = time.perf_counter() - t0
    r["duckdb_day_s"], r["rows"], r["sensors"] = duck_day(ds)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_appender, args=(protocol, url, k, 10, sensors, q)) for k in (1, 2)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    r["concurrent_2x10_wall_s"] = time.perf_counter() - t0
    lat = [x for res in results for x in res[0]]
    r["concurrent_commit_median_s"], r["concurrent_commit_max_s"] = statistics.median(lat), max(lat)
    r["concurrent_retries"] = sum(res[1] or 0 for res in results) if protocol == "manifest" else "n/a (inside deltalake)"
    expected = r["rows"] + sum(batch(fleet, 1000 + 100 * k + i).num_rows for k in (1, 2) for i in range(10))
    got = duck_day(m.dataset() if m else d.dataset("readings"))[1]
    r["rows_after_concurrent"], r["rows_expected"] = got, expected
    return r


def micro_batch_1000(url: str) -> dict:
    """A 30 s batch of 1,000 sensors appended to `readings` on the object store, and its retry."""
    os.environ["IOT_LAKE_URL"] = url
    d = Lake(Path(tempfile.mkdtemp(prefix="iot-bench-")), lake_store_from_env())
    fleet = sim.FleetParams(seed=7, n_sensors=1000)
    d.replace_partition("readings", DAY, batch(fleet, 0))
    t0 = time.perf_counter()
    t = batch(fleet, 1)
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    d.append_part("readings", DAY, 1, t)
    commit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = d.append_part("readings", DAY, 1, t)
    return {"rows": t.num_rows, "simulate_s": sim_s, "append_commit_s": commit_s, "retry_s": time.perf_counter() - t0, "retry_wrote": again}


def local_disk(sensors: int, parts: int) -> dict:
    """The same day on local disk: today's lake (renameat2 + state file) vs a Delta table (what migrating costs)."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    from iot_platform.io.lake import Lake

    fleet = sim.FleetParams(seed=7, n_sensors=sensors)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        lake = Lake(tmp)
        t0 = time.perf_counter()
        lake.replace_partition("readings", DAY, day_chunks(fleet))
        out["lake_write_day_s"] = time.perf_counter() - t0
        lat = []
        for i in range(parts):
            t = batch(fleet, i)
            t0 = time.perf_counter()
            lake.write_part("readings", DAY, f"b{i}", t)
            lat.append(time.perf_counter() - t0)
        out["lake_append_part_median_s"] = statistics.median(lat)
        uri = f"{tmp}/delta_readings"
        schema = READINGS.append(pa.field("date", pa.date32(), nullable=False))

        def with_date(t: pa.Table) -> pa.Table:
            return t.cast(READINGS).append_column(schema.field("date"), pa.array([DAY] * t.num_rows, pa.date32()))

        reader = pa.RecordBatchReader.from_batches(schema, (b for c in day_chunks(fleet) for b in with_date(c).to_batches()))
        t0 = time.perf_counter()
        write_deltalake(uri, reader, partition_by=["date"], mode="overwrite")
        out["delta_write_day_s"] = time.perf_counter() - t0
        lat = []
        for i in range(parts):
            t = with_date(batch(fleet, i))
            t0 = time.perf_counter()
            write_deltalake(uri, t, mode="append", commit_properties=CommitProperties(app_transactions=[Transaction("mb", i)]))
            lat.append(time.perf_counter() - t0)
        out["delta_append_part_median_s"] = statistics.median(lat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--local-only", action="store_true", help="only the local-disk comparison")
    args = ap.parse_args()
    print("local_disk", json.dumps(local_disk(args.sensors, args.parts), indent=1), flush=True)
    if args.local_only:
        return
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, run_seaweedfs(Path(tmp)) as server:
        os.environ.update(server.env())
        out = {}
        for protocol in ("delta", "manifest"):
            out[protocol] = measure(protocol, f"s3://{server.bucket}/{protocol}", args.sensors, args.parts)
            print(protocol, json.dumps(out[protocol], indent=1, default=str), flush=True)
        out["micro_batch_1000"] = micro_batch_1000(f"s3://{server.bucket}/mb")
        print("micro_batch_1000", json.dumps(out["micro_batch_1000"], indent=1), flush=True)


if __name__ == "__main__":
    main()
