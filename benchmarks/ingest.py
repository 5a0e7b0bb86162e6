"""Ingest throughput and peak memory: a 1M-row CSV file and a 1M-row PostgreSQL table.

Builds the data by resampling the bundled telco_churn rows (seeded), writes it as a gzip-free CSV and
loads it into PostgreSQL at 127.0.0.1:5432 with COPY, then times each reader in a fresh
process (so peak RSS is that run's alone): what the ingest stage does (read, content hash, Parquet
snapshot) against plain pandas reading the same file or table and writing Parquet.
Run: `.venv/bin/python benchmarks/ingest.py [--rows 1000000] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Runs in a fresh interpreter: reads once, prints wall seconds, rows and the process's peak RSS (MB).
PROBE = """
import json, os, resource, sys, tempfile, time
from mlgate.adapters import sources
from mlgate.modelling.data import SourceSpec
from mlgate.stages import ingest
import pandas as pd
import sqlalchemy as sa
kind, where = sys.argv[1], sys.argv[2]
out = os.path.join(tempfile.mkdtemp(), "data.parquet")
start = time.perf_counter()
if kind == "pandas-csv":  # baselines: plain pandas, read then write Parquet
    data = pd.read_csv(where)
    data.to_parquet(out, index=False)
elif kind == "pandas-sql":
    data = pd.read_sql_table(where, sa.create_engine(sys.argv[3]))
    data.to_parquet(out, index=False)
else:  # what the ingest stage does: read, content hash, Parquet snapshot
    source = SourceSpec(kind="file", path=where) if kind == "file" else SourceSpec(kind="sql",
    url=sys.argv[3], table=where)
    data = sources.read_snapshot(source)
    ingest.describe(data, source)
    ingest.write_parquet(data, out)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": len(data), "peak_mb":
resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(*args: str, repeats: int = 3) -> dict:
    """The run with the median time of ``repeats`` fresh-process reads."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    telco = pd.read_csv(REPO / "data/source/telco_churn.csv.gz")
    frame = telco.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)
    table = f"ingest_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mlgate-ingest-bench-") as scratch:
        csv_path = Path(scratch) / "rows.csv"
        frame.to_csv(csv_path, index=False)
        frame.head(0).to_sql(table, engine, index=False)
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, header=False)
        with engine.connect() as connection:
            cursor = connection.connection.cursor()
            with cursor.copy(f'COPY "{table}" FROM STDIN WITH (FORMAT csv)') as copy:
                copy.write(buffer.getvalue())
            connection.connection.commit()
        try:
            results["pandas read_csv + to_parquet (baseline)"] = measure("pandas-csv", str(csv_path))
            results["mlgate ingest, file source (CSV)"] = measure("file", str(csv_path))
            results["pandas read_sql_table + to_parquet"] = measure("pandas-sql", table, POSTGRES)
            results["mlgate ingest, sql source (PostgreSQL)"] = measure("sql", table, POSTGRES)
        finally:
            with engine.begin() as connection:
                connection.execute(sa.text(f'drop table if exists "{table}"'))
            engine.dispose()
        size_mb = csv_path.stat().st_size / 1e6
    baseline = results["pandas read_csv + to_parquet (baseline)"]["seconds"]
    width = max(map(len, results))
    print(f"{args.rows:,} rows × {frame.shape[1]} columns; CSV {size_mb:.0f} MB")
    print(f"{'reader':<{width}}  {'seconds':>8}  {'rows/s':>10}  {'peak MB':>8}  {'vs baseline':>11}")
    for name, r in results.items():
        assert r["rows"] == args.rows, f"{name} read {r['rows']} rows"
        r["rows_per_s"] = r["rows"] / r["seconds"]
        print(
            f"{name:<{width}}  {r['seconds']:>8.2f}  {r['rows_per_s']:>10,.0f}  {r['peak_mb']:>8.0f}  "
            f"{r['seconds'] / baseline:>10.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "csv_mb": size_mb, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
