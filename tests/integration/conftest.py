"""Fixtures of the team setup: PostgreSQL databases made and dropped per module, and a real
`mlflow server` on one of them (proxied artifacts) on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.helpers import BIN, PG_SERVER, SERVER_ENV, pg_admin


@pytest.fixture(scope="module")
def databases():
    """A factory of empty PostgreSQL databases, dropped when the module ends."""
    made = []

    def make(prefix: str) -> str:
        name = f"mlgate_{prefix}_{uuid.uuid4().hex[:8]}"
        pg_admin(f"CREATE DATABASE {name}")
        made.append(name)
        return f"{PG_SERVER}/{name}"

    yield make
    for name in made:
        pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(databases, tmp_path_factory):
    """`mlflow server` on PostgreSQL with proxied artifacts: clients need only its URL, no shared disk."""
    port, artifacts = _free_port(), tmp_path_factory.mktemp("server_artifacts")
    log = (tmp_path_factory.mktemp("server") / "server.log").open("wb")
    server = subprocess.Popen(
        [BIN / "mlflow", "server", "--backend-store-uri", databases("tracking"), "--serve-artifacts"]
        + ["--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | SERVER_ENV,
    )
    url = f"http://127.0.0.1:{port}"
    give_up = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > give_up:
                server.kill()
                pytest.fail(f"mlflow server did not start:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.5)
    yield url
    server.send_signal(signal.SIGTERM)
    server.wait(30)


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, a free loopback port), which a
    test may stop and start as an operator restarts one, without touching the machine's shared server."""

    def __init__(self, folder: Path):
        self.data, self.port = folder / "data", _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        bin_dir = next((Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
        self.bin = Path(os.environ.get("MLGATE_PG_BIN", bin_dir or ""))
        if not (self.bin / "initdb").exists():
            pytest.fail(f"no PostgreSQL server binaries in {self.bin} (set MLGATE_PG_BIN to the folder of initdb)")
        # initdb and postgres refuse to run as root: as the postgres account, in a folder it owns
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            os.chown(folder, pwd.getpwnam("postgres").pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def private_postgres():
    folder = Path(tempfile.mkdtemp(prefix="mlgate-pg-"))
    server = PrivatePostgres(folder)
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):
        server.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)
