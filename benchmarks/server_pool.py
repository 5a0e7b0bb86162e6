"""The team's MLflow server under concurrent writers: how many of their writes succeed, and how long the
slowest takes, with SQLAlchemy's default database pool and with the one deploy/mlflow-server.sh sets.

Each writer is a thread with its own run that sends `--batches` log_batch calls (5 params, 5 metrics, 3 tags
each), as a worker's trial recorder does; all start together. MLflow's log_batch opens a second database
connection while it holds one, so once as many requests run at once as the pool has connections, each waits
for a second that none will return until SQLAlchemy's 30 s pool timeout fails it (HTTP 400, not retried by the
client). Starts `deploy/mlflow-server.sh` (one server worker, 40 request threads) on a new PostgreSQL
database per case at a free loopback port. Goal: every write of 80 writers succeeds with the deploy pool.

    .venv/bin/python benchmarks/server_pool.py [--writers 10 20 40 80] [--batches 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import mlflow
from mlflow.entities import Metric, Param, RunTag
from scale_out import POSTGRES, Databases, tracking_server
from tiny_model import run_benchmark

POOLS = {  # name: (pool size, overflow)
    "sqlalchemy default": ("5", "10"),
    "deploy/mlflow-server.sh": ("5", "36"),
}
GOAL_WRITERS = 80


class Write(NamedTuple):
    ok: bool
    seconds: float
    error: str


def write_batches(client: mlflow.MlflowClient, run_id: str, batches: int, start: threading.Barrier) -> Write:
    start.wait()
    began = time.perf_counter()
    try:
        for k in range(batches):
            client.log_batch(
                run_id,
                metrics=[Metric(f"metric_{i}", float(i), 0, k) for i in range(5)],
                params=[Param(f"param_{k}_{i}", str(i)) for i in range(5)],
                tags=[RunTag(f"tag_{i}", str(k)) for i in range(3)],
            )
    except mlflow.MlflowException as error:
        return Write(False, time.perf_counter() - began, str(error).split("(Background")[0].strip()[:160])
    return Write(True, time.perf_counter() - began, "")


def run_case(databases: Databases, pool: tuple[str, str], writers: int, batches: int) -> dict:
    settings = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": pool[0], "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": pool[1]}
    with (
        tempfile.TemporaryDirectory(prefix="mlgate-pool-") as scratch,
        tracking_server(databases, Path(scratch), workers=1, settings=settings) as (_, url, _),
    ):
        client = mlflow.MlflowClient(url)
        experiment = client.create_experiment("pool")
        runs = [client.create_run(experiment).info.run_id for _ in range(writers)]
        start = threading.Barrier(writers)
        began = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool_threads:
            writes = list(pool_threads.map(lambda run: write_batches(client, run, batches, start), runs))
        wall = time.perf_counter() - began
    failed = [w for w in writes if not w.ok]
    return {
        "pool_size": int(pool[0]),
        "max_overflow": int(pool[1]),
        "writers": writers,
        "writes_ok": len(writes) - len(failed),
        "writes_failed": len(failed),
        "slowest_s": round(max(w.seconds for w in writes), 2),
        "wall_s": round(wall, 2),
        "batches_per_s": round((len(writes) - len(failed)) * batches / wall, 1),
        "first_error": failed[0].error if failed else "",
    }


def benchmark(args) -> dict:
    databases = Databases(args.postgres)
    cases = []
    try:
        for name, pool in POOLS.items():
            for writers in args.writers:
                case = {"pool": name} | run_case(databases, pool, writers, args.batches)
                print(row(case), flush=True)
                cases.append(case)
    finally:
        databases.close()
    deploy = [c for c in cases if c["pool"] == "deploy/mlflow-server.sh" and c["writers"] >= GOAL_WRITERS]
    return {
        "batches_per_writer": args.batches,
        "cases": cases,
        "goal_writers": GOAL_WRITERS,
        "goal_met": all(c["writes_failed"] == 0 for c in deploy) if deploy else None,  # None: not measured
    }


HEADER = "| pool | size + overflow | writers | ok | failed | slowest s | wall s | batches/s |"


def row(case: dict) -> str:
    return (
        f"| {case['pool']} | {case['pool_size']} + {case['max_overflow']} | {case['writers']} | {case['writes_ok']} "
        f"| {case['writes_failed']} | {case['slowest_s']} | {case['wall_s']} | {case['batches_per_s']} |"
    )


def report(result: dict) -> None:
    print("\n" + HEADER + "\n" + "|---" * 8 + "|")
    for case in result["cases"]:
        print(row(case))
    errors = {c["first_error"] for c in result["cases"] if c["first_error"]}
    for error in sorted(errors):
        print(f"error: {error}")
    verdict = {True: "met", False: "NOT met", None: f"not measured (no case of {result['goal_writers']} writers)"}[
        result["goal_met"]
    ]
    print(f"goal (every write of {result['goal_writers']} writers succeeds with the deploy pool): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--batches", type=int, default=5, help="log_batch calls per writer")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server URL, without a database")
    run_benchmark(parser, benchmark, report)


if __name__ == "__main__":
    main()
