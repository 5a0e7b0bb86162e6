"""Fixtures of the team setup: PostgreSQL databases made and dropped per module, and a real
`mlflow server` on one of them (proxied artifacts) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.helpers import BIN, PG_SERVER, SMALL_SERVER, pg_admin


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
        # MLflow's job runner (GenAI trace jobs, eight more processes) serves nothing mlgate uses; a small
        # pool: the tests' servers, studies and stores share one PostgreSQL (max_connections 100)
        env=os.environ | SMALL_SERVER,
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
