"""A real PostgreSQL server for the test session (pytest plugin, loaded from tests/conftest.py).

Debian's ``postgresql-15`` binaries run straight from /usr/lib/postgresql: no
system cluster, no service. ``initdb`` refuses to run as root, so as root the
server runs as the unprivileged user ``nobody`` in a temporary directory owned
by it. It listens on 127.0.0.1 on a free port (and its unix socket in that
directory), with password authentication over TCP, so the tests see a
password-protected server like a real deployment's. Each test gets a database
of its own (``postgres_url``); the server is stopped and its directory removed
at the end of the session.

When the binaries are missing they are installed with apt-get (as root), like
tests/conftest.py installs the emulator's toolchain; otherwise the tests that
need them are skipped with the exact command to run.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DEBIAN_PACKAGE = "postgresql-15"
INSTALL_COMMAND = f"apt-get install -y {DEBIAN_PACKAGE}"
PASSWORD = "s3cret-pg-pass"  # appears in URLs only; the tests check it never reaches a file


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _install() -> str | None:
    """Install the server package as root; None when done, else why not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", DEBIAN_PACKAGE]):
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    bindir: Path

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` with the server's own psql; its unaligned, tuples-only output."""
        env = dict(os.environ, PGPASSWORD=self.password)
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
             "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _bindir()
    if bindir is None:
        why = _install()
        bindir = _bindir()
        if bindir is None:
            pytest.skip(f"PostgreSQL server not installed ({why}); run: {INSTALL_COMMAND}")
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="iot-pg-"))
    data, pwfile = base / "data", base / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    user_kw: dict = {}
    if as_root:  # initdb and postgres refuse root: everything runs as `nobody`
        shutil.chown(base, "nobody")
        shutil.chown(pwfile, "nobody")
        user_kw = {"user": "nobody", "group": "nogroup"}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8",
         "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"],
        check=True, capture_output=True, cwd=base, **user_kw,
    )  # fmt: skip
    port = _free_port()
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(base),
         # a throwaway server: durability off makes the Dagster tests several times faster
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, cwd=base, **user_kw,
    )  # fmt: skip
    server = PostgresServer("127.0.0.1", port, "postgres", PASSWORD, bindir)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(base / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()  # SIGTERM: "smart" shutdown once clients are gone; then fast
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server: its URL, without a driver (``postgresql://``)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.psql("postgres", f"CREATE DATABASE {name}")
    return postgres_server.url(name)
