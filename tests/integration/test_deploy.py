"""deploy/: the team's MLflow server script, run for real on the machine's PostgreSQL (a new database it
creates, a free loopback port); the systemd units and Kubernetes manifests, examples not run here, checked
as far as this machine can (systemd-analyze, and their commands parsed by the real CLIs); and the README's
'Working as a team' commands against what they name."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.helpers import BIN, POSTGRES, REPO, point_mlflow_at

DEPLOY = REPO / "deploy"
SCRIPT = DEPLOY / "mlflow-server.sh"
SERVER = POSTGRES.rsplit("/", 1)[0]  # the machine's PostgreSQL, without a database


def _admin(statement: str, *args: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(SERVER.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        cursor = c.execute(statement, args or None)
        return cursor.fetchall() if cursor.description else []


def _database_exists(name: str) -> bool:
    return bool(_admin("SELECT 1 FROM pg_database WHERE datname = %s", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _script_env(**settings: str) -> dict[str, str]:
    """The environment `make server` gives the script: the venv's mlflow first on PATH."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    return inherited | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"} | settings


class _Server:
    """deploy/mlflow-server.sh in a subprocess, its output in a file; stopped with SIGTERM as systemd would."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.log = cwd / f"server-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [SCRIPT, "--workers", "1"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{env['MLGATE_SERVER_PORT']}"

    def health(self, wait_s: float = 180.0) -> str:
        give_up = time.time() + wait_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                if self.process.poll() is not None or time.time() > give_up:
                    self.stop()
                    pytest.fail(f"deploy/mlflow-server.sh did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, which mlflow passes on to its server process; on a loaded machine it can take a minute."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(180)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.mark.slow
def test_the_server_script_creates_its_database_and_keeps_runs_and_proxied_artifacts_across_a_restart(
    tmp_path, monkeypatch
):
    import mlflow

    name = f"mlgate_deploy_{uuid.uuid4().hex[:8]}"
    artifacts = tmp_path / "artifacts"
    env = _script_env(
        MLGATE_SERVER_DB=f"{SERVER}/{name}",
        MLGATE_SERVER_ARTIFACTS=str(artifacts),
        MLGATE_SERVER_PORT=str(_free_port()),
    )
    assert not _database_exists(name)
    started: list[_Server] = []
    try:
        first = _Server(tmp_path, env)
        started.append(first)
        assert first.health() == "OK"
        point_mlflow_at(monkeypatch, first.url)  # how mlflow-artifacts:/ URIs find the server
        client = mlflow.MlflowClient(tracking_uri=first.url)
        experiment = client.create_experiment(f"deploy-{name}")
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "trial predictions", "trials/notes.txt")
        client.set_terminated(run.info.run_id)
        first.stop()

        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # the client had no path to write to
        landed = artifacts / experiment / run.info.run_id / "artifacts" / "trials" / "notes.txt"
        assert landed.read_text() == "trial predictions"
        assert f"created database {name}" in first.log.read_text()

        again = _Server(tmp_path, env)  # a restart (systemd's Restart=on-failure) finds the database made
        started.append(again)
        again.health()
        point_mlflow_at(monkeypatch, again.url)
        kept = mlflow.MlflowClient(tracking_uri=again.url).get_run(run.info.run_id)
        assert kept.info.status == "FINISHED"
        fetched = mlflow.artifacts.download_artifacts(f"{kept.info.artifact_uri}/trials", dst_path=str(tmp_path / "d"))
        assert (Path(fetched) / "notes.txt").read_text() == "trial predictions"
        again.stop()
        assert "created database" not in again.log.read_text()
    finally:
        for server in started:
            server.stop()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    ("database", "said"),
    [
        (SERVER, "MLGATE_SERVER_DB names no database"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/mlflow", "cannot create database 'mlflow' on 127.0.0.1:1"),
    ],
)
def test_the_server_script_says_what_is_wrong_with_its_database_before_starting(tmp_path, database, said):
    result = subprocess.run(
        [SCRIPT], cwd=tmp_path, env=_script_env(MLGATE_SERVER_DB=database), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert said in result.stderr
    assert not (tmp_path / "mlartifacts").exists()


def test_make_server_runs_the_script_with_its_arguments():
    dry = subprocess.run(
        ["make", "-n", "server", "ARGS=--workers 2"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "deploy/mlflow-server.sh --workers 2" in dry.stdout.splitlines()
    assert re.search(r"^\.PHONY:.*\bserver\b", (REPO / "Makefile").read_text(), re.MULTILINE)


# systemd ------------------------------------------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def _worker_args(command: list[str], substitutions: dict[str, str]) -> dict:
    """``command`` (`mlgate worker ...`, variables substituted) parsed by the real `mlgate worker`."""
    from mlgate.cli import worker

    expanded = shlex.split(" ".join(substitutions.get(word, word) for word in command))
    assert expanded[:2] == ["mlgate", "worker"], command
    return worker.make_context("worker", expanded[2:]).params


def test_the_worker_unit_runs_one_mlgate_worker_per_instance_from_the_checkout():
    service = _unit("mlgate-worker@.service")["Service"]
    program, *args = shlex.split(service["ExecStart"])
    assert program == f"{service['WorkingDirectory']}/.venv/bin/mlgate"
    parsed = _worker_args(
        ["mlgate", *args], {"${MLGATE_STUDY_NAME}": "telco_churn-1a2b3c4d5e6f", "$MLGATE_WORKER_ARGS": "--threads 1"}
    )
    assert (parsed["study"], parsed["threads"]) == ("telco_churn-1a2b3c4d5e6f", 1)
    assert service["Restart"] == "on-failure"
    assert not service["EnvironmentFile"].startswith("-")  # no study and no server without it


def test_the_server_unit_runs_the_script_from_the_checkout():
    service = _unit("mlflow-server.service")["Service"]
    assert service["ExecStart"] == f"{service['WorkingDirectory']}/deploy/mlflow-server.sh"
    assert service["Restart"] == "on-failure"


def _monitor_args(command: list[str], substitutions: dict[str, str]) -> dict:
    """``command`` (`mlgate monitor ...`, variables substituted) parsed by the real `mlgate monitor`."""
    from mlgate.cli import monitor

    expanded = shlex.split(" ".join(substitutions.get(word, word) for word in command))
    assert expanded[:2] == ["mlgate", "monitor"], command
    return monitor.make_context("monitor", expanded[2:]).params


def test_the_monitor_unit_runs_mlgate_monitor_once_and_counts_a_breach_as_success():
    unit = _unit("mlgate-monitor.service")
    service = unit["Service"]
    program, *args = shlex.split(service["ExecStart"])
    assert program == f"{service['WorkingDirectory']}/.venv/bin/mlgate"
    log = "postgresql+psycopg://mlgate@db/ops"
    parsed = _monitor_args(["mlgate", *args], {"${MLGATE_PREDICTION_LOG}": log})
    assert parsed["prediction_log"] == log
    assert (service["Type"], service["SuccessExitStatus"]) == ("oneshot", "2")
    environment = (DEPLOY / "systemd" / "mlgate-monitor.service").read_text()
    assert "MLGATE_TEXTFILE=" in environment  # the gauges reach node_exporter's textfile collector
    timer = _unit("mlgate-monitor.timer")["Timer"]
    assert timer["Unit"] == "mlgate-monitor.service" and timer["Persistent"] == "true"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    "names",
    [["mlflow-server.service"], ["mlgate-worker@.service"], ["mlgate-monitor.service", "mlgate-monitor.timer"]],
)
def test_systemd_verifies_the_units_pointed_at_this_checkout(tmp_path, names):
    for name in names:
        text = (DEPLOY / "systemd" / name).read_text()
        unit = _unit(name)
        if unit.has_section("Service"):
            root = unit["Service"]["WorkingDirectory"]
            text = text.replace(f"{root}/.venv/bin", str(BIN)).replace(root, str(REPO))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


# Kubernetes ---------------------------------------------------------------------------------------------


def _manifest(name: str) -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {}
    for document in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()):
        by_kind.setdefault(document["kind"], []).append(document)
    return by_kind


def _check_pod(pod: dict, claims: list[dict]) -> dict:
    """The pod's one container, after checking that its volumes are the file's claims, each mounted, and that
    it runs as the image's user (the Dockerfile's uid) on those volumes."""
    (container,) = pod["containers"]
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert sorted(volumes.values()) == sorted(c["metadata"]["name"] for c in claims)
    assert sorted(m["name"] for m in container["volumeMounts"]) == sorted(volumes)
    uid = re.search(r"useradd .*--uid (\d+)", (REPO / "Dockerfile").read_text()).group(1)
    assert pod["securityContext"]["fsGroup"] == int(uid)
    return container


def _env(container: dict) -> dict[str, dict | str]:
    return {e["name"]: e.get("valueFrom") or e["value"] for e in container["env"]}


def test_the_server_manifest_runs_mlflow_server_on_the_database_its_secret_names():
    from mlflow.cli import server

    found = _manifest("mlflow-server.yaml")
    assert sorted(found) == ["Deployment", "PersistentVolumeClaim", "Service"]
    (deployment,), (service,) = found["Deployment"], found["Service"]
    pod = deployment["spec"]["template"]
    container = _check_pod(pod["spec"], found["PersistentVolumeClaim"])
    assert container["command"] == ["mlflow", "server"]
    env = _env(container)
    assert env["MLFLOW_DB"]["secretKeyRef"] == {"name": "mlgate-db", "key": "mlflow-url"}
    args = [re.sub(r"\$\((\w+)\)", lambda m: f"<{m.group(1)}>", a) for a in container["args"]]
    parsed = server.make_context("server", args).params  # options this mlflow accepts
    assert parsed["backend_store_uri"] == "<MLFLOW_DB>" and parsed["serve_artifacts"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["artifacts"]
    assert parsed["artifacts_destination"] == mount and parsed["host"] == "0.0.0.0"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    (port,) = service["spec"]["ports"]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [(port["targetPort"], parsed["port"])]
    assert f"{service['metadata']['name']}:{port['port']}" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


def test_the_worker_job_runs_parallel_mlgate_workers_on_the_study_its_environment_names():
    found, server = _manifest("mlgate-workers.yaml"), _manifest("mlflow-server.yaml")
    assert sorted(found) == ["Job", "PersistentVolumeClaim"]
    (job,) = found["Job"]
    spec = job["spec"]
    assert spec["parallelism"] >= 2 and spec.get("completions") in (None, spec["parallelism"])
    pod = spec["template"]["spec"]
    container = _check_pod(pod, found["PersistentVolumeClaim"])
    parsed = _worker_args(container["command"], {"$(STUDY)": "telco_churn-1a2b3c4d5e6f"})
    assert parsed["study"] == "telco_churn-1a2b3c4d5e6f" and parsed["threads"] == 1
    env = _env(container)
    assert "configMapKeyRef" in env["STUDY"]
    assert env["MLGATE_STUDY"]["secretKeyRef"] == {"name": "mlgate-db", "key": "study-url"}
    (service,), (deployment,) = server["Service"], server["Deployment"]
    assert env["MLFLOW_TRACKING_URI"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {f"{container['workingDir']}/data/split"}  # predictions travel with the runs


def test_the_monitor_cronjob_clones_main_and_runs_mlgate_monitor_on_the_secrets_log():
    found, server = _manifest("mlgate-monitor.yaml"), _manifest("mlflow-server.yaml")
    assert sorted(found) == ["CronJob"]
    (cronjob,) = found["CronJob"]
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (checkout,), (container,) = pod["initContainers"], pod["containers"]
    assert "git clone --branch main" in checkout["command"][-1]
    shell, flag, script = container["command"]
    assert (shell, flag) == ("sh", "-c") and script.endswith("|| [ $? -eq 2 ]")  # a breach is a success
    log = "postgresql+psycopg://mlgate@db/ops"
    parsed = _monitor_args(shlex.split(script.split("||")[0]), {"$PREDICTION_LOG": log})
    assert parsed["prediction_log"] == log
    env = _env(container)
    assert env["PREDICTION_LOG"]["secretKeyRef"] == {"name": "mlgate-monitor", "key": "prediction-log-url"}
    assert env["MLGATE_PUSHGATEWAY"].startswith("http://")  # read by `mlgate monitor --push-gateway`
    (service,) = server["Service"]
    assert env["MLFLOW_TRACKING_URI"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    workdir = container["workingDir"]
    assert checkout["command"][-1].endswith(workdir)
    mounted = {m["mountPath"] for m in container["volumeMounts"]} | {m["mountPath"] for m in checkout["volumeMounts"]}
    assert all(workdir.startswith(path) for path in mounted)
    assert checkout["image"] == container["image"]  # the image holds git (Dockerfile)
    assert "install -y --no-install-recommends git" in (REPO / "Dockerfile").read_text()


def test_mlgate_monitor_reads_the_schedules_settings_from_the_environment(monkeypatch):
    from mlgate.cli import monitor

    monkeypatch.setenv("MLGATE_PUSHGATEWAY", "http://pushgateway:9091")
    monkeypatch.setenv("MLGATE_TEXTFILE", "/var/lib/node-exporter/mlgate_monitor.prom")
    parsed = monitor.make_context("monitor", []).params
    assert parsed["push_gateway"] == "http://pushgateway:9091"
    assert parsed["textfile"] == "/var/lib/node-exporter/mlgate_monitor.prom"


# The READMEs ----------------------------------------------------------------------------------------------


def _team_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Working as a team\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_team_section_names_only_make_targets_files_and_options_that_exist():
    from mlgate import config

    section, makefile = _team_section(), (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY: (.*)$", makefile, re.MULTILINE).group(1).split()
    assert set(re.findall(r"\bmake ([a-z][a-z-]*)", section)) <= set(phony)
    for path in re.findall(r"\b(deploy/[\w./@-]+\w)", section):
        assert (REPO / path).exists(), path
    for variable in set(re.findall(r"\bMLGATE_SERVER_\w+", section)):
        assert variable in SCRIPT.read_text(), variable
    commands = re.findall(r"^\s*(?:\.venv/bin/)?(mlgate worker [^#\n]*?)\s*(?:#.*)?$", section, re.MULTILINE)
    assert commands
    for command in commands:
        _worker_args(shlex.split(command), {})
    params = config.read_params(REPO / "params.yaml")
    for override in re.search(r'make params ARGS="([^"]*)"', section).group(1).split():
        section_name, key = override.split("=", 1)[0].split(".")
        assert key in params[section_name], override


def test_deploy_readme_describes_every_file_in_deploy():
    readme = (DEPLOY / "README.md").read_text()
    files = [
        p.relative_to(DEPLOY).as_posix()
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts
    ]
    assert files
    assert [f for f in files if f"`{f}`" not in readme] == []
