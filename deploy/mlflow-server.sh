#!/usr/bin/env bash
# The team's MLflow server: runs and the model registry in PostgreSQL, artifacts uploaded through the
# server (proxied) to one folder or object store, so a client needs only MLFLOW_TRACKING_URI=http://HOST:PORT
# and no shared disk. `make server` runs it with the project's venv; so does a plain `deploy/mlflow-server.sh`
# (it falls back to the checkout's .venv when mlflow is not on PATH). Set with environment variables:
#   MLGATE_SERVER_DB         backend store, created if missing    [postgresql+psycopg://postgres@127.0.0.1:5432/mlflow]
#                            (a password goes in PGPASSWORD or ~/.pgpass, not in the URL)
#   MLGATE_SERVER_ARTIFACTS  where uploaded artifacts land          [./mlartifacts; s3://... needs boto3]
#   MLGATE_SERVER_HOST       interface to bind                      [127.0.0.1; 0.0.0.0 for other machines]
#   MLGATE_SERVER_PORT       port                                   [5000]
# Arguments are passed on to `mlflow server`, e.g. --workers 2, or --allowed-hosts mlflow.example.com:5000
# when clients reach it by a name (MLflow accepts only localhost and private IPs in the Host header by default).
set -euo pipefail

db=${MLGATE_SERVER_DB:-postgresql+psycopg://postgres@127.0.0.1:5432/mlflow}
artifacts=${MLGATE_SERVER_ARTIFACTS:-./mlartifacts}
host=${MLGATE_SERVER_HOST:-127.0.0.1}
port=${MLGATE_SERVER_PORT:-5000}

if ! command -v mlflow >/dev/null; then
  venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin"
  [[ -x "$venv/mlflow" ]] || { echo "mlflow-server.sh: no mlflow on PATH nor in $venv (run make first)" >&2; exit 1; }
  PATH="$venv:$PATH"
fi
python=$(dirname "$(command -v mlflow)")/python  # mlflow's own, which has psycopg and SQLAlchemy
[[ -x $python ]] || python=python3

# CREATE DATABASE cannot run inside the database it creates: connect to the server's `postgres`
# database with the same user, host and options, and create the one the URL names unless it exists.
if [[ $db == postgres* ]]; then
  "$python" - "$db" <<'PY'
import sys

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

url = make_url(sys.argv[1])
if not url.database:
    sys.exit(f"mlflow-server.sh: MLGATE_SERVER_DB names no database: {url.render_as_string()}")
admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
try:
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            print(f"mlflow-server.sh: created database {url.database}", flush=True)
except psycopg.Error as error:
    sys.exit(f"mlflow-server.sh: cannot create database {url.database!r} on {url.host}:{url.port or 5432}: {error}")
PY
fi

# MLflow's job runner (eight more processes, for GenAI trace jobs) serves nothing mlgate uses; set
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to keep it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
# Each server worker (--workers) answers up to 40 requests at once, and MLflow's log_batch takes a second
# database connection while it holds one: with SQLAlchemy's default pool (5 + 10 overflow), 40 writers at
# once (ten machines of two workers) deadlock for the pool's 30 s timeout and most of their writes fail
# (benchmarks/server_pool.py). 5 + 36 is one more connection than a worker's request threads, so one always
# proceeds; the overflow opens only under load. Plan PostgreSQL's max_connections for 41 per server worker.
export MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=${MLFLOW_SQLALCHEMYSTORE_POOL_SIZE:-5}
export MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-36}
exec mlflow server --backend-store-uri "$db" --serve-artifacts --artifacts-destination "$artifacts" \
  --host "$host" --port "$port" "$@"
