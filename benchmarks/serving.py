"""Serving throughput and latency: `mlgate serve` against `mlflow models serve` on the same registered model.

Builds a registered model in a temporary copy of the project with its own SQLite MLflow store (the stages'
run() functions on the tests' tiny budget, then `promote` to 'production'), or takes an existing one
(--tracking-uri with --model [--alias], or --model-uri). Then, one server at a time, never both at once:
starts it on 127.0.0.1 at a free port, waits until it is ready, warms it up, and drives POST /invocations
with --concurrency threads, each holding one keep-alive connection, for --seconds per case: single-row
requests and --batch-row requests (`dataframe_split` JSON built from telco churn rows, the model's input
columns only). Both servers get the same bodies in the same order from the same client. mlgate also
answers the single rows with their EXPLAINED_TOP largest feature contributions (`params.explain`, a case
MLflow has no counterpart for): its cost is the ratio to the plain single-row case of the same run.
With a registered model, a third server, mlgate with `--shadow staging` (a second version of the same
model holding 'staging', so the shadow costs what the served model does), answers the plain cases: the
shadow's cost is its p50/p99 against plain mlgate's in the same round.
Run: `.venv/bin/python benchmarks/serving.py [--seconds 10] [--concurrency 4] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tiny_model import BIN, REPO, build_model, environment

GOAL_RATIO = 3.0  # mlgate rps / mlflow rps, each case
GOAL_P99_MS = 20.0  # mlgate p99, single-row case
EXPLAINED = "1 row +explain"  # mlgate only: the single rows with `params: {"explain": EXPLAINED_TOP}`
EXPLAINED_TOP = 5
SHADOWED = "mlgate+shadow"  # mlgate serve --shadow staging

# Registers the production version's files again as a second version holding 'staging', so that a shadow
# has a version other than the served one to follow; sealed, as mlgate serve loads only verified files.
STAGE_A_COPY = """
import sys
import mlflow
from mlgate.adapters.tracking import DIGEST_TAG
from mlgate.services.promote import seal
name = sys.argv[1]
client = mlflow.MlflowClient()
held = client.get_model_version_by_alias(name, "production")
tags = {key: value for key, value in held.tags.items() if key != DIGEST_TAG}
copy = client.create_model_version(name, held.source, held.run_id, tags=tags)
seal(name, int(copy.version), "serving benchmark: the production version's files, registered again as a shadow")
client.set_registered_model_alias(name, "staging", copy.version)
print(copy.version)
"""

# Runs against the tracking store: what the alias (or URI) names, and the model's input columns.
RESOLVE = """
import json, sys
import mlflow
from mlflow.models import get_model_info
name, alias, uri = sys.argv[1:4]
version = ""
if not uri:
    held = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    uri, version = f"models:/{name}@{alias}", held.version
signature = get_model_info(uri).signature
columns = signature.inputs.input_names() if signature is not None and signature.inputs is not None else []
print(json.dumps({"uri": uri, "version": version, "columns": columns}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def shadow_rows(port: int) -> tuple[float, float]:
    """(rows the shadow scored, rows it skipped with its backlog full) so far, from mlgate's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = get(port, "/metrics")
    found = {}
    for family in text_string_to_metric_families(text.decode()) if status == 200 else []:
        for sample in family.samples:
            found[sample.name] = sample.value
    return found.get("mlgate_shadow_rows_total", 0.0), found.get("mlgate_shadow_skipped_rows_total", 0.0)


def model_calls(port: int) -> tuple[float, float] | None:
    """(model calls, rows predicted in them) so far, from mlgate's /metrics; None for a server without them."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = get(port, "/metrics")
    if status != 200:
        return None
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "mlgate_model_call_rows":
            values = {s.name: s.value for s in family.samples}
            return values["mlgate_model_call_rows_count"], values["mlgate_model_call_rows_sum"]
    return None


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


class Server:
    """One server as a subprocess in its own process group (`mlflow models serve` forks uvicorn)."""

    def __init__(self, name: str, args: list[str], ready_path: str, port: int, env: dict[str, str], cwd: Path):
        self.name, self.args, self.ready_path, self.port, self.env, self.cwd = name, args, ready_path, port, env, cwd
        self.log = cwd / f"{name}-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 300) -> float:
        started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.perf_counter() - started < timeout_s:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode} before it was ready:\n{self.tail()}")
            try:
                if get(self.port, self.ready_path)[0] == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} was not ready after {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)  # the group we created: the server and its children only
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def cpu_seconds(self) -> float:
        """CPU time so far of the server and its worker processes (user + system)."""
        import psutil

        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        total = 0.0
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def drive(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """``concurrency`` threads, one keep-alive connection each, POSTing ``bodies`` in turn for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    go = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = i  # each thread starts at a different body; all cycle through the same list
        go.wait()
        try:
            while time.perf_counter() < deadline[0]:
                body = bodies[n % len(bodies)]
                n += 1
                t0 = time.perf_counter()
                try:
                    status, _ = post(conn, body)
                except (OSError, http.client.HTTPException):
                    errors[i] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    continue
                if status == 200:
                    latencies[i].append(time.perf_counter() - t0)
                else:
                    errors[i] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    client_cpu = (time.process_time() - cpu0) / elapsed
    done = np.array([x for per in latencies for x in per]) * 1000
    if not len(done):
        return {
            "requests": 0,
            "errors": sum(errors),
            "rps": 0.0,
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
            "client_cpu": client_cpu,
        }
    return {
        "requests": int(len(done)),
        "errors": sum(errors),
        "rps": len(done) / elapsed,
        "p50_ms": float(np.percentile(done, 50)),
        "p99_ms": float(np.percentile(done, 99)),
        "client_cpu": client_cpu,
    }


def payloads(data: Path, target: str, columns: list[str], batch: int) -> dict[str, list[bytes]]:
    """JSON bodies: 200 distinct single rows and 20 distinct ``batch``-row frames (complete rows only)."""
    frame = pd.read_csv(data)
    frame = frame[columns] if columns else frame.drop(columns=[target], errors="ignore")
    frame = frame.dropna().sample(frac=1, random_state=0).reset_index(drop=True)

    def body(rows: pd.DataFrame, **extra: dict) -> bytes:
        split = json.loads(rows.to_json(orient="split", index=False))
        return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}, **extra}).encode()

    single = [body(frame.iloc[[i % len(frame)]]) for i in range(200)]
    explained = [body(frame.iloc[[i % len(frame)]], params={"explain": EXPLAINED_TOP}) for i in range(200)]
    many = [body(frame.take([(j * batch + k) % len(frame) for k in range(batch)])) for j in range(20)]
    return {"1 row": single, EXPLAINED: explained, f"{batch} rows": many}  # the last case's answer is compared


def servers(target: dict, env: dict[str, str], cwd: Path, workers: int, mlflow_workers: int) -> dict[str, Server]:
    mlgate_port, mlflow_port, shadowed_port = free_port(), free_port(), free_port()
    if target["model"]:
        mlgate_args = ["--model", target["model"], "--alias", target["alias"]]
    else:
        mlgate_args = ["--model-uri", target["uri"]]
    shadowed = {}
    if target.get("shadow_version"):
        shadowed[SHADOWED] = Server(
            SHADOWED,
            [
                str(BIN / "mlgate"),
                "serve",
                *mlgate_args,
                "--shadow",
                "staging",
                "--host",
                "127.0.0.1",
                "--port",
                str(shadowed_port),
                "--workers",
                str(workers),
            ],
            "/ready",
            shadowed_port,
            env,
            cwd,
        )
    return {
        **shadowed,
        "mlgate": Server(
            "mlgate",
            [
                str(BIN / "mlgate"),
                "serve",
                *mlgate_args,
                "--host",
                "127.0.0.1",
                "--port",
                str(mlgate_port),
                "--workers",
                str(workers),
            ],
            "/ready",
            mlgate_port,
            env,
            cwd,
        ),
        "mlflow": Server(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                target["uri"],
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mlflow_port),
                "--workers",
                str(mlflow_workers),
            ],
            "/ping",
            mlflow_port,
            env,
            cwd,
        ),
    }


def bench_one(server: Server, cases: dict[str, list[bytes]], args: argparse.Namespace) -> tuple[dict, list]:
    """Start, warm up, measure every case, stop. Returns (results by case, the first batch body's predictions)."""
    try:
        ready_s = server.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        status, reply = post(conn, cases[list(cases)[-1]][0])
        conn.close()
        if status != 200:
            raise SystemExit(f"{server.name} answered {status} to a valid request: {reply[:500]!r}\n{server.tail()}")
        results = {}
        for case, bodies in cases.items():
            drive(server.port, bodies, args.concurrency, args.warmup)
            cpu, calls = server.cpu_seconds(), model_calls(server.port)
            results[case] = drive(server.port, bodies, args.concurrency, args.seconds)
            # the server's own CPU per request: what the machine's load does not change much
            results[case]["server_cpu_ms"] = (server.cpu_seconds() - cpu) * 1000 / max(1, results[case]["requests"])
            # requests per model call: how many waiting requests mlgate's batcher predicted together
            after = model_calls(server.port) if calls is not None else None
            results[case]["requests_per_call"] = (
                results[case]["requests"] / (after[0] - calls[0])
                if after is not None and after[0] > calls[0]
                else float("nan")
            )
        results["_shadow_rows"] = shadow_rows(server.port)
        results["_ready_s"] = ready_s
        return results, json.loads(reply)["predictions"]
    finally:
        server.stop()


def median_run(runs: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "client_cpu", "server_cpu_ms", "requests_per_call")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out.update(requests=sum(r["requests"] for r in runs), errors=sum(r["errors"] for r in runs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per server and case")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each case")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads, one keep-alive connection each")
    parser.add_argument("--batch", type=int, default=100, help="rows per request in the batch case")
    parser.add_argument("--workers", type=int, default=1, help="mlgate serve --workers")
    parser.add_argument("--mlflow-workers", type=int, default=1, help="mlflow models serve --workers (the baseline's)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds (servers restarted, order alternating); medians")
    parser.add_argument(
        "--tracking-uri", help="benchmark an existing model in this store (with --model or --model-uri)"
    )
    parser.add_argument("--model", help="registered model name in --tracking-uri")
    parser.add_argument("--alias", default="production", help="alias of --model to serve")
    parser.add_argument("--model-uri", help="any MLflow model URI, served as is by both")
    parser.add_argument(
        "--data", type=Path, default=REPO / "data/source/telco_churn.csv.gz", help="rows for request bodies"
    )
    parser.add_argument("--target", default="churn", help="the target column, left out of the bodies")
    parser.add_argument("--no-shadow", action="store_true", help="skip the mlgate server with a shadow")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.model and args.model_uri:
        parser.error("give --model or --model-uri, not both")
    if args.model and not args.tracking_uri:
        parser.error("--model needs --tracking-uri (without both, the script builds its own model)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop the servers

    with tempfile.TemporaryDirectory(prefix="mlgate-serve-bench-") as tmp:
        scratch = Path(tmp)
        family = None
        if args.model or args.model_uri:
            env = environment(args.tracking_uri)
            model = args.model
        else:
            model, env, family = build_model(scratch, "serving benchmark")
        alias = args.alias if model else ""
        out = subprocess.run(
            [sys.executable, "-c", RESOLVE, model or "", alias, args.model_uri or ""],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"cannot resolve the model:\n{out.stderr[-3000:]}")
        resolved = json.loads(out.stdout.strip().splitlines()[-1])
        target = {"model": model, "alias": alias, **resolved, "shadow_version": None}
        if model and not args.no_shadow:
            staged = subprocess.run(
                [sys.executable, "-c", STAGE_A_COPY, model], env=env, capture_output=True, text=True
            )
            if staged.returncode != 0:
                raise SystemExit(f"cannot register a shadow version:\n{staged.stderr[-3000:]}")
            target["shadow_version"] = staged.stdout.strip().splitlines()[-1]
        cases = payloads(args.data, args.target, target["columns"], args.batch)
        runs: dict[str, dict[str, list[dict]]] = {"mlgate": {}, "mlflow": {}}
        ready: dict[str, list[float]] = {"mlgate": [], "mlflow": []}
        shadowed_rows: list[tuple[float, float]] = []
        answers: dict[str, list] = {}
        for round_ in range(args.repeats):
            group = servers(target, env, scratch, args.workers, args.mlflow_workers)
            order = [name for name in ("mlflow", "mlgate", SHADOWED) if name in group]
            for name in order if round_ % 2 == 0 else order[::-1]:
                asked = cases if name == "mlgate" else {k: v for k, v in cases.items() if k != EXPLAINED}
                results, answers[name] = bench_one(group[name], asked, args)
                ready.setdefault(name, []).append(results.pop("_ready_s"))
                rows = results.pop("_shadow_rows")
                if name == SHADOWED:
                    shadowed_rows.append(rows)
                for case, r in results.items():
                    runs.setdefault(name, {}).setdefault(case, []).append(r)

    table = {name: {case: median_run(rs) for case, rs in by_case.items()} for name, by_case in runs.items()}
    same = _same_predictions(answers["mlgate"], answers["mlflow"]) and (
        SHADOWED not in answers or answers[SHADOWED] == answers["mlgate"]  # a shadow never changes an answer
    )
    load = os.getloadavg()
    print(
        f"model {target['uri']}"
        + (f" (v{target['version']})" if target["version"] else "")
        + (f", {family}" if family else "")
        + f"; workers: mlgate {args.workers}, mlflow {args.mlflow_workers}"
        + f"; {args.concurrency} keep-alive connection(s), {args.seconds:g} s per case (+{args.warmup:g} s warm-up), "
        f"{args.repeats} round(s); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"ready after: mlgate {statistics.median(ready['mlgate']):.1f} s, mlflow "
        f"{statistics.median(ready['mlflow']):.1f} s; "
        f"same predictions on a {args.batch}-row body: {'yes' if same else 'NO'}"
    )
    header = (
        f"{'server':<7}  {'case':<14}  {'requests':>8}  {'rps':>8}  {'rows/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  "
        f"{'errors':>6}  {'client CPU':>10}  {'server CPU ms/req':>17}  {'requests/call':>13}"
    )
    print(header)
    for name in table:
        for case, r in table[name].items():
            rows = args.batch if case not in ("1 row", EXPLAINED) else 1
            print(
                f"{name:<7}  {case:<14}  {r['requests']:>8,}  {r['rps']:>8,.0f}  {r['rps'] * rows:>9,.0f}  "
                f"{r['p50_ms']:>7.2f}  {r['p99_ms']:>7.2f}  {r['errors']:>6}  {r['client_cpu']:>9.0%}  "
                f"{r['server_cpu_ms']:>17.2f}  "
                + (
                    f"{r['requests_per_call']:>13.2f}"
                    if r["requests_per_call"] == r["requests_per_call"]
                    else f"{'-':>13}"
                )
            )
    ratios = {
        case: table["mlgate"][case]["rps"] / table["mlflow"][case]["rps"]
        if table["mlflow"][case]["rps"]
        else float("inf")
        for case in table["mlflow"]
    }
    cpu_ratios = {
        case: table["mlflow"][case]["server_cpu_ms"] / table["mlgate"][case]["server_cpu_ms"]
        for case in table["mlflow"]
    }
    for case, ratio in ratios.items():
        print(
            f"ratio mlgate/mlflow rps, {case}: {ratio:.2f}x (server CPU per request, mlflow/mlgate: "
            f"{cpu_ratios[case]:.2f}x)"
        )
    plain, explained = table["mlgate"]["1 row"], table["mlgate"][EXPLAINED]
    explanation_cost = {
        "p50_ratio": explained["p50_ms"] / plain["p50_ms"],
        "p99_ratio": explained["p99_ms"] / plain["p99_ms"],
        "server_cpu_ratio": explained["server_cpu_ms"] / plain["server_cpu_ms"],
    }
    print(
        f"explanations ({EXPLAINED_TOP} contributions), 1 row: p50 {explained['p50_ms']:.2f} ms against "
        f"{plain['p50_ms']:.2f} ms ({explanation_cost['p50_ratio']:.2f}x), p99 {explanation_cost['p99_ratio']:.2f}x, "
        f"server CPU per request {explanation_cost['server_cpu_ratio']:.2f}x"
    )
    shadow_cost = None
    if SHADOWED in table:
        shadow_cost = {
            case: {
                "p50_ratio": table[SHADOWED][case]["p50_ms"] / table["mlgate"][case]["p50_ms"],
                "p99_ratio": table[SHADOWED][case]["p99_ms"] / table["mlgate"][case]["p99_ms"],
                "rps_ratio": table[SHADOWED][case]["rps"] / table["mlgate"][case]["rps"],
            }
            for case in table[SHADOWED]
        }
        for case, cost in shadow_cost.items():
            print(
                f"shadow (v{target['shadow_version']} on 'staging'), {case}: p50 {cost['p50_ratio']:.2f}x, "
                f"p99 {cost['p99_ratio']:.2f}x, rps {cost['rps_ratio']:.2f}x of plain mlgate's"
            )
        print(
            "rows the shadow scored (skipped, its backlog full) per round: "
            + ", ".join(f"{scored:,.0f} ({skipped:,.0f})" for scored, skipped in shadowed_rows)
        )
    checks = [
        (f"mlgate rps >= {GOAL_RATIO:g}x mlflow, {case}", ratio >= GOAL_RATIO, f"{ratio:.2f}x")
        for case, ratio in ratios.items()
    ]
    p99 = table["mlgate"]["1 row"]["p99_ms"]
    checks.append((f"mlgate p99, 1 row <= {GOAL_P99_MS:g} ms", p99 <= GOAL_P99_MS, f"{p99:.2f} ms"))
    errors = sum(r["errors"] for by_case in table.values() for r in by_case.values())
    checks.append(("no request errors", errors == 0, f"{errors} errors"))
    checks.append(("same predictions from both servers", same, ""))
    for label, ok, value in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}" + (f" ({value})" if value else ""))

    if args.json:
        single = "1 row"
        args.json.write_text(
            json.dumps(
                {
                    "mlgate_rps": table["mlgate"][single]["rps"],
                    "mlflow_rps": table["mlflow"][single]["rps"],
                    "ratio": ratios[single],
                    "p99_ms": p99,
                    "ratio_by_case": ratios,
                    "server_cpu_ratio_by_case": cpu_ratios,
                    "explanation_cost": explanation_cost,
                    "shadow_cost": shadow_cost,
                    "shadow_rows": shadowed_rows,
                    "cases": table,
                    "same_predictions": same,
                    "goals": {label: ok for label, ok, _ in checks},
                    "settings": {
                        "model_uri": target["uri"],
                        "version": target["version"],
                        "family": family,
                        "workers": args.workers,
                        "mlflow_workers": args.mlflow_workers,
                        "concurrency": args.concurrency,
                        "seconds": args.seconds,
                        "warmup": args.warmup,
                        "batch": args.batch,
                        "repeats": args.repeats,
                        "loadavg": load,
                    },
                },
                indent=2,
            )
            + "\n"
        )


def _same_predictions(a: list, b: list) -> bool:
    """Both servers' answers to one body agree (labels exactly, numbers to 1e-9)."""
    try:
        left, right = pd.DataFrame(a), pd.DataFrame(b)
        pd.testing.assert_frame_equal(left, right, check_dtype=False, rtol=1e-9)
        return True
    except (AssertionError, ValueError, TypeError):
        return False


if __name__ == "__main__":
    main()
