"""Batch scoring throughput and peak memory: `mlgate score` against reading the whole file with pandas.

Builds CSV files of several sizes by resampling the bundled telco_churn rows (seeded, the target left
out, a `customer_id` added for --keep-columns), then scores each in a fresh process, so each peak RSS
is that run's alone: `mlgate score` as a user runs it (chunked reading, atomic chunked writing) and a
baseline that reads the whole file with pandas, predicts it with the pyfunc model in one call, and
writes the whole output. Flat memory means `mlgate score`'s peak does not grow with the file.
The model: --model-uri, or --tracking-uri with --model [--alias], or one the script builds itself in
a temporary copy of the project (the tests' tiny budget; as benchmarks/serving.py does).
Run: `.venv/bin/python benchmarks/scoring.py [--rows 250000,1000000,2000000] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, QUIET, REPO, THREADS, build_model  # noqa: E402 - the sibling benchmark's model builder

# Runs `mlgate score` (argv) as its child; prints the wall seconds and the child's peak RSS.
TIMED = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
if done.returncode != 0:
    raise SystemExit(done.stdout[-2000:] + done.stderr[-4000:])
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

# The baseline, in a fresh interpreter: the whole file in memory, one predict call, the whole output.
WHOLE = """
import json, resource, sys, time
start = time.perf_counter()
import mlflow
import pandas as pd
uri, source, target = sys.argv[1:4]
model = mlflow.pyfunc.load_model(uri)
frame = pd.read_parquet(source) if source.endswith(".parquet") else pd.read_csv(source)
output = model.predict(frame.drop(columns=["customer_id"]))
pd.concat([frame[["customer_id"]], output.reset_index(drop=True)], axis=1).to_csv(target, index=False)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_rows(path: Path, rows: int, seed: int = 0) -> float:
    """``rows`` resampled telco rows without the target, plus a customer_id, as CSV or Parquet (by the
    suffix; Parquet in row groups of the pyarrow default); the file's size in MB."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    telco = pd.read_csv(REPO / "data/source/telco_churn.csv.gz").drop(columns=["churn"])
    rng = np.random.default_rng(seed)
    block, writer = 250_000, None
    for start in range(0, rows, block):
        size = min(block, rows - start)
        chunk = telco.iloc[rng.integers(0, len(telco), size)].reset_index(drop=True)
        chunk.insert(0, "customer_id", [f"c{start + i:08d}" for i in range(size)])
        if path.suffix == ".csv":
            chunk.to_csv(path, mode="a" if start else "w", header=start == 0, index=False)
            continue
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return path.stat().st_size / 1e6


def run_probe(code: str, args: list[str], env: dict[str, str], cwd: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"a scoring run failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(mine: Path, whole: Path) -> dict:
    """How the two outputs agree: same ids in order, labels, largest probability difference."""
    a, b = pd.read_csv(mine), pd.read_csv(whole)
    same_ids = a["customer_id"].equals(b["customer_id"])
    labels = float((a["prediction"] == b["prediction"]).mean())
    gap = float(np.abs(a["probability"] - b["probability"]).max()) if "probability" in a else None
    return {"same_ids": same_ids, "label_agreement": labels, "max_probability_gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="250000,1000000,2000000", help="comma-separated file sizes in rows")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="mlgate score --chunk-rows")
    parser.add_argument("--input-format", choices=["csv", "parquet"], default="csv")
    parser.add_argument(
        "--no-baseline", action="store_true", help="only mlgate score (the baseline needs the whole file in RAM)"
    )
    parser.add_argument(
        "--tracking-uri", help="score with an existing model in this store (with --model or --model-uri)"
    )
    parser.add_argument("--model", help="registered model name in --tracking-uri")
    parser.add_argument("--alias", default="production")
    parser.add_argument("--model-uri", help="any MLflow model URI")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.model and not args.tracking_uri:
        parser.error("--model needs --tracking-uri (without both, the script builds its own model)")
    sizes = [int(n) for n in args.rows.split(",")]

    with tempfile.TemporaryDirectory(prefix="mlgate-score-bench-") as tmp:
        scratch = Path(tmp)
        env = {**THREADS, **os.environ, **QUIET, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        if args.model or args.model_uri:
            if args.tracking_uri:
                env["MLFLOW_TRACKING_URI"] = args.tracking_uri
            uri = args.model_uri or f"models:/{args.model}@{args.alias}"
        else:
            model, env, _ = build_model(scratch)
            uri = f"models:/{model}@production"
        results = []
        for rows in sizes:
            source = scratch / f"rows-{rows}.{args.input_format}"
            file_mb = write_rows(source, rows)
            scored = run_probe(
                TIMED,
                [
                    str(BIN / "mlgate"),
                    "score",
                    "--model-uri",
                    uri,
                    "--input",
                    str(source),
                    "--output",
                    str(scratch / "mlgate.csv"),
                    "--keep-columns",
                    "customer_id",
                    "--chunk-rows",
                    str(args.chunk_rows),
                ],
                env,
                scratch,
            )
            results.append({"scorer": "mlgate score", "rows": rows, "file_mb": file_mb, **scored})
            if not args.no_baseline:
                whole = run_probe(WHOLE, [uri, str(source), str(scratch / "whole.csv")], env, scratch)
                results.append(
                    {
                        "scorer": "pandas whole file + pyfunc predict",
                        "rows": rows,
                        "file_mb": file_mb,
                        **whole,
                        **compare(scratch / "mlgate.csv", scratch / "whole.csv"),
                    }
                )
            source.unlink()

    print(
        f"model {uri}; {args.input_format} input, CSV output; --chunk-rows {args.chunk_rows:,}; load "
        f"average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'scorer':<35}  {'rows':>10}  {'file MB':>8}  {'wall s':>7}  {'rows/s':>9}  {'peak MB':>8}")
    for r in results:
        r["rows_per_s"] = r["rows"] / r["seconds"]
        print(
            f"{r['scorer']:<35}  {r['rows']:>10,}  {r['file_mb']:>8.0f}  {r['seconds']:>7.1f}  "
            f"{r['rows_per_s']:>9,.0f}  "
            f"{r['peak_mb']:>8.0f}"
        )
    for r in results:
        if "same_ids" in r:
            print(
                f"{r['rows']:>10,} rows: same ids in order {r['same_ids']}, labels agree on "
                f"{r['label_agreement']:.4%}, "
                f"largest probability gap {r['max_probability_gap']}"
            )
    mine = [r["peak_mb"] for r in results if r["scorer"] == "mlgate score"]
    print(
        f"mlgate score peak from {sizes[0]:,} to {sizes[-1]:,} rows: {mine[0]:.0f} → {mine[-1]:.0f} MB "
        f"({mine[-1] / mine[0]:.2f}x for {sizes[-1] / sizes[0]:.0f}x the rows)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model_uri": uri,
                    "chunk_rows": args.chunk_rows,
                    "input_format": args.input_format,
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
