# `mlgate serve` as a container: the registered model behind the HTTP API, following its alias.
# Not built or run where it was written (that machine has no Docker daemon); tests/unit/test_container.py
# checks that what it copies exists and that its command parses as `mlgate serve` options.
#   docker build -t mlgate-serve .
#   docker run -p 8080:8080 -e MLFLOW_TRACKING_URI=postgresql+psycopg://mlflow@db/mlflow \
#     -e MLGATE_MODEL=telco_churn mlgate-serve
# The tracking URI must reach the registry and the model's artifacts (a shared server or store);
# the models are pickled scikit-learn pipelines, so build the image from the commit that trained them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true OMP_NUM_THREADS=1 \
    MLGATE_MODEL=telco_churn MLGATE_ALIAS=production
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# git: `mlgate monitor` (deploy/kubernetes/mlgate-monitor.yaml) cuts and pushes a retraining branch on a breach
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/* \
    && python -m pip install "pip==25.3" && python -m pip install -c requirements.lock . \
    && useradd --create-home --uid 10001 mlgate
USER mlgate
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=2)"
# exec: the server replaces the shell as PID 1, so `docker stop` (SIGTERM) reaches it and flushes the log
CMD ["sh", "-c", "exec mlgate serve --host 0.0.0.0 --port 8080 --model \"$MLGATE_MODEL\" --alias \"$MLGATE_ALIAS\""]
