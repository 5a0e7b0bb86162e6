"""`mlgate monitor` on a schedule: its gauges pushed to a real Prometheus Pushgateway (Debian's
prometheus-pushgateway), each push replacing the model's last, and a gateway that cannot be reached named
in the error."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mlgate.errors import StageError
from mlgate.services import monitor

PUSHGATEWAY = shutil.which("prometheus-pushgateway")
pytestmark = pytest.mark.skipif(
    PUSHGATEWAY is None,
    reason="prometheus-pushgateway not on PATH (Debian: apt-get install -y prometheus-pushgateway)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gateway(tmp_path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "pushgateway.log").open("wb") as log:
        process = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "pushgateway.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def summary(at: str, version: int = 3) -> dict:
    return {
        "model": "churn",
        "version": version,
        "rows": 400,
        "drift": {"drift_share": 0.1},
        "policy": {"max_drift_share": 0.3, "every_hours": 24.0},
        "breaches": [],
        "decay": None,
        "generated_at": at,
    }


def pushed(url: str) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("mlgate_monitor_")
    }


def test_each_run_pushes_its_gauges_and_replaces_the_models_last(gateway):
    monitor.push_gauges(gateway, summary("2026-12-03T05:17:00+00:00", version=3))
    monitor.push_gauges(gateway, summary("2026-12-04T05:17:00+00:00", version=4))

    samples = pushed(gateway)
    labels = frozenset({"job": "mlgate_monitor", "instance": "", "model": "churn", "version": "4"}.items())
    assert samples[("mlgate_monitor_last_success_timestamp_seconds", labels)] == 1796361420.0
    assert samples[("mlgate_monitor_interval_seconds", labels)] == 86400.0
    assert samples[("mlgate_monitor_drift_share", labels)] == 0.1
    assert {dict(key)["version"] for _, key in samples} == {"4"}  # the older run's series are gone


def test_a_gateway_that_cannot_be_reached_is_named():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StageError, match=f"Pushgateway {url}"):
        monitor.push_gauges(url, summary("2026-12-04T05:17:00+00:00"), timeout_s=2)
