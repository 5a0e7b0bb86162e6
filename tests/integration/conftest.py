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
from collections.abc import Iterator
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


@contextlib.contextmanager
def running_mlflow_server(backend: str, folder: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """`mlflow server` on ``backend`` with proxied artifacts in ``folder``, bound to ``host`` at a free port,
    as deploy/mlflow-server.sh runs it; its URL (at 127.0.0.1 when bound to every interface)."""
    port = _free_port()
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [BIN / "mlflow", "server", "--backend-store-uri", backend, "--serve-artifacts"]
        + ["--artifacts-destination", str(folder / "artifacts"), "--host", host, "--port", str(port)]
        + ["--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | SERVER_ENV,
    )
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
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
    try:
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


@pytest.fixture(scope="module")
def mlflow_server(databases, tmp_path_factory):
    """`mlflow server` on PostgreSQL with proxied artifacts: clients need only its URL, no shared disk."""
    with running_mlflow_server(databases("tracking"), tmp_path_factory.mktemp("server")) as url:
        yield url


class PrivatePostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, a free loopback port), which a
    test may stop and start as an operator restarts one, without touching the machine's shared server."""

    def __init__(self, folder: Path, also_listen: str | None = None):
        self.data, self.port, self.also_listen = folder / "data", _free_port(), also_listen
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
        if also_listen:  # clients in a network namespace of the test's (its /24), trusted as local ones are
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {also_listen.rsplit('.', 1)[0]}.0/24 trust\n")
        self.start()

    def database(self, name: str) -> str:
        """The URL of a new database ``name`` on this server."""
        import psycopg

        with psycopg.connect(self.url.replace("+psycopg", ""), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return f"{self.url.rsplit('/', 1)[0]}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        listen = ",".join(filter(None, ("127.0.0.1", self.also_listen)))
        options = f"-p {self.port} -k {self.data} -c listen_addresses={listen} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def private_postgres():
    """A factory of PostgreSQL servers of the test's own (``also_listen``: one more address to serve)."""
    made: list[tuple[PrivatePostgres, Path]] = []

    def make(also_listen: str | None = None) -> PrivatePostgres:
        folder = Path(tempfile.mkdtemp(prefix="mlgate-pg-"))
        made.append((PrivatePostgres(folder, also_listen), folder))
        return made[-1][0]

    yield make
    for server, folder in made:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


class NetworkNamespace:
    """A network namespace of the test's own, joined to this one by a veth pair: a process started in it
    (``command``) reaches this machine at ``host_ip`` only, and ``cut()`` takes this side's end of the pair
    down, so that its packets are silently lost, as with a pulled cable or a partition."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.name, self.host_end, self.far_end = f"mlg{tag}", f"mlg{tag}h", f"mlg{tag}w"
        subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
        self.host_ip, self.far_ip = f"{subnet}.1", f"{subnet}.2"
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.far_end)
        self._ip("link", "set", self.far_end, "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_end)
        self._ip("link", "set", self.host_end, "up")
        self._ip("-n", self.name, "addr", "add", f"{self.far_ip}/24", "dev", self.far_end)
        self._ip("-n", self.name, "link", "set", self.far_end, "up")
        self._ip("-n", self.name, "link", "set", "lo", "up")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        self._ip("link", "set", self.host_end, "down")

    def remove(self) -> None:
        self._ip("netns", "delete", self.name)  # deletes the pair's far end, and with it this one


@pytest.fixture
def network_namespace():
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (CAP_NET_ADMIN); CI runs as root")
    namespace = NetworkNamespace()
    yield namespace
    namespace.remove()
