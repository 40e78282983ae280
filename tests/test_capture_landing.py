"""The landing zone's writers: names, schema, atomic appearance, quarantine records."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest_serial import hidden_files

from iot_platform.core.schemas import LANDING
from iot_platform.io.landing import (
    NAMER,
    QuarantineWriter,
    SpoolWriter,
    StagedFile,
    import_source,
    import_stream,
    landing_files,
    read_quarantine,
    serial_source,
    serial_stream,
    slug,
)

UTC = dt.timezone.utc
NAME_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-\d+-\d{6}\.parquet$")


@pytest.mark.parametrize(
    ("port", "stream"),
    [
        ("/dev/ttyACM0", "serial-ttyACM0"),
        ("/dev/ttyUSB1", "serial-ttyUSB1"),
        ("/dev/pts/3", "serial-pts-3"),
        ("/dev/serial/by-id/usb-Arduino_LLC_Uno_123-if00", "serial-serial-by-id-usb-Arduino_LLC_Uno_123-if00"),
        ("./ttyEMU0", "serial-ttyEMU0"),
        ("socket://127.0.0.1:5678", "serial-socket-127.0.0.1-5678"),
        ("rfc2217://host:2217?ign_set_control", "serial-rfc2217-host-2217-ign_set_control"),
        ("loop://", "serial-loop"),
    ],
)
def test_serial_stream_names(port, stream):
    assert serial_stream(port) == stream
    assert serial_source(port) == f"serial:{port}"


def test_import_stream_names():
    assert import_stream("/data/plant.csv") == "import-plant"
    assert import_stream("Plant 2 (east).csv.gz") == "import-Plant-2-east"
    assert import_stream("_hidden.parquet") == "import-hidden"
    assert import_source("/data/plant.csv") == "import:plant.csv"
    assert slug("...") == "unnamed"


def test_file_names_are_unique_and_sort_by_creation():
    names = [NAMER.next(".parquet") for _ in range(200)]
    assert len(set(names)) == 200
    assert names == sorted(names)
    assert all(NAME_RE.match(n) for n in names)


def _rows(ids, seconds):
    return pa.table(
        {
            "sensor_id": ids,
            "ts": pa.array([dt.datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in seconds], pa.timestamp("us", "UTC")),
            "temperature": [float(s) for s in seconds],
            "source": ["serial:x"] * len(ids),
        }
    )


def test_spool_writer_lands_sorted_landing_files_atomically(tmp_path):
    w = SpoolWriter(tmp_path, "serial-x")
    assert w.write(LANDING.empty_table()) is None
    p1 = w.write(_rows(["b", "a", "b", "a"], [2, 3, 1, 1]))
    p2 = w.write(_rows(["c"], [9]))
    assert landing_files(tmp_path) == [p1, p2]
    assert NAME_RE.match(p1.name) and p1.parent == tmp_path / "serial-x"
    t = pq.read_table(p1)
    assert t.schema.equals(LANDING)  # missing nullable columns are added as nulls
    assert [(r["sensor_id"], r["ts"].second) for r in t.to_pylist()] == [("a", 1), ("a", 3), ("b", 1), ("b", 2)]
    assert t.column("seq").null_count == 4 and t.column("humidity").null_count == 4
    assert hidden_files(tmp_path) == []
    with pytest.raises(ValueError, match=r"stream 'a b' is not a slug; expected e.g. 'a-b'"):
        SpoolWriter(tmp_path, "a b")


def test_staged_files_appear_only_when_published(tmp_path):
    w = SpoolWriter(tmp_path, "import-x")
    a, b, empty = w.stage(), w.stage(), w.stage()
    a.write(_rows(["a"], [1]))
    a.write(_rows(["a"], [2]))
    b.write(_rows(["b"], [3]))
    assert landing_files(tmp_path) == []  # nothing visible while staged
    paths = w.publish([a, b, empty])
    assert landing_files(tmp_path) == paths and len(paths) == 2
    assert pq.read_table(paths[0]).column("temperature").to_pylist() == [1.0, 2.0]
    assert hidden_files(tmp_path) == []
    d = StagedFile(tmp_path / "import-y", row_group_rows=3)
    for second in (5, 4, 3, 2, 1):
        d.write(_rows(["d"], [second]))
    d.close()
    meta = pq.read_metadata(d.tmp)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 2]
    assert pq.read_table(d.tmp).column("temperature").to_pylist() == [3.0, 4.0, 5.0, 1.0, 2.0]  # sorted per group
    d.discard()
    c = w.stage()
    c.write(_rows(["c"], [4]))
    c.discard()
    assert hidden_files(tmp_path) == [] and landing_files(tmp_path) == paths


def test_quarantine_records_keep_raw_bytes_losslessly(tmp_path):
    q = QuarantineWriter(tmp_path, "serial-x")
    assert q.publish() is None  # nothing refused, no file
    raw = b"\xff\x00caf\xc3\xa9 \\x41\r"
    q.add(source="serial:/dev/x", received_at_us=1_763_823_662_123_456, reason="bad", code="decode", raw=raw, line=7)
    q.add(source="import:a.csv", received_at_us=0, reason="r2", code="ts", raw='{"a": "1"}', row=3)
    assert list((tmp_path / "_quarantine" / "serial-x").glob("*.jsonl")) == []  # still hidden
    path = q.publish()
    assert path.parent == tmp_path / "_quarantine" / "serial-x" and path.suffix == ".jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {
        "source": "serial:/dev/x",
        "received_at": "2025-11-22T15:01:02.123456Z",
        "reason": "bad",
        "code": "decode",
        "raw": "\\xff\x00café \\x41\r",
        "raw_b64": base64.b64encode(raw).decode(),
        "line": 7,
    }
    assert base64.b64decode(json.loads(lines[0])["raw_b64"]) == raw
    assert json.loads(lines[1]) == {
        "source": "import:a.csv", "received_at": "1970-01-01T00:00:00.000000Z", "reason": "r2", "code": "ts",
        "raw": '{"a": "1"}', "row": 3,
    }  # fmt: skip
    assert read_quarantine(tmp_path) == [json.loads(line) for line in lines]
    assert hidden_files(tmp_path) == []


def test_quarantine_discard_leaves_nothing(tmp_path):
    q = QuarantineWriter(tmp_path, "s")
    q.add(source="s", received_at_us=0, reason="r", code="empty", raw=b"")
    q.discard()
    assert hidden_files(tmp_path) == [] and read_quarantine(tmp_path) == []
