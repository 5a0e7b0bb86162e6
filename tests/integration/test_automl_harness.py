"""benchmarks/automl.py's processes: what it measures of the process it runs, the timeout that kills
it with whatever it started, and one small real run of the harness with the catboost baseline."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from tests.helpers import (
    REPO,
    bench_binary_entry,
    bench_binary_frame,
    bench_regression_frame,
    bench_suite,
    load_benchmark,
)

bench = load_benchmark("automl.py", "automl_bench")
HARNESS = REPO / "benchmarks" / "automl.py"
RECORD_KEYS = {"system", "dataset", "task", "metric", "value", "wall_s", "peak_mb", "status"}


def test_execute_measures_the_process_not_the_harness(tmp_path):
    grow = "x = b'x' * (200 * 2**20); import time; time.sleep(0.5)"
    grown = bench.execute([sys.executable, "-c", grow], {}, tmp_path, tmp_path / "log", timeout_s=30)
    assert grown.returncode == 0 and grown.peak_mb > 200 and grown.wall_s >= 0.5  # at least what it held, and slept
    assert 0 < grown.cpu_s < grown.wall_s  # it slept: less CPU than wall
    busy = "import time\\nwhile time.process_time() < 0.7: pass"
    spin = f"import subprocess, sys; subprocess.run([sys.executable, '-c', '{busy}'], check=True)"
    spun = bench.execute([sys.executable, "-c", spin], {}, tmp_path, tmp_path / "log", timeout_s=30)
    assert spun.returncode == 0 and spun.cpu_s > 0.5  # the CPU of the descendant it waited for counts
    ballast = b"x" * (400 * 2**20)  # the harness's own memory must not count towards its child's
    idle = bench.execute([sys.executable, "-c", "pass"], {}, tmp_path, tmp_path / "log", timeout_s=30)
    assert idle.peak_mb < grown.peak_mb - 150 and len(ballast)  # counted, the ballast would outweigh the 200 MiB
    outcome = bench.execute([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path, tmp_path / "log", timeout_s=30)
    assert outcome.returncode == 3


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("then", ["time.sleep(30)", "time.sleep(0.6)"])
def test_execute_kills_the_process_at_the_timeout_and_whatever_it_leaves_behind(tmp_path, then):
    # The runner starts a process in a session of its own (as a JVM might), then hangs or exits.
    script = (
        f"import subprocess, time; p = subprocess.Popen(['sleep', '60'], start_new_session=True); "
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(p.pid)); {then}"
    )
    outcome = bench.execute([sys.executable, "-c", script], {}, tmp_path, tmp_path / "log", timeout_s=1.5)
    if then == "time.sleep(30)":
        assert outcome.returncode is None and outcome.wall_s >= 1.5  # stopped at the timeout, not by itself
    else:
        assert outcome.returncode == 0
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):
        if _gone(pid):
            break
        time.sleep(0.1)
    assert _gone(pid)


@pytest.mark.slow
def test_harness_runs_the_catboost_baseline_on_a_tiny_suite(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    bench_binary_frame(300).to_csv(suite / "tiny_churn.csv.gz", index=False)
    bench_regression_frame(300).to_csv(suite / "tiny_prices.csv.gz", index=False)
    bench_suite(
        suite,
        [
            bench_binary_entry(name="tiny_churn", file="tiny_churn.csv.gz"),
            {"name": "tiny_prices", "file": "tiny_prices.csv.gz", "target": "price", "task": "regression"},
        ],
    )
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "--suite",
            str(suite),
            "--systems",
            "catboost",
            "--budget",
            "5",
            "--seeds",
            "0,1",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    records = json.loads(out.read_text())
    assert [(r["dataset"], r["seed"]) for r in records] == [
        ("tiny_churn", 0),
        ("tiny_churn", 1),
        ("tiny_prices", 0),
        ("tiny_prices", 1),
    ]
    for r in records:
        assert set(r) >= RECORD_KEYS and r["system"] == "catboost" and r["status"] == "ok", r
        assert r["wall_s"] > r["fit_s"] > 0 and r["peak_mb"] > 50 and r["budget_s"] == 5
    churn, prices = records[0], records[2]
    assert churn["metric"] == "roc_auc" and 0.7 < churn["value"] <= 1
    assert prices["metric"] == "rmse" and prices["value"] < prices["baseline"]
    assert "| tiny_churn | binary | roc_auc ↑ |" in done.stdout and "| catboost | 4 | 4 |" in done.stdout
    assert not list((tmp_path / "scratch").glob("*/runs/*")), "ok runs leave no scratch behind"
