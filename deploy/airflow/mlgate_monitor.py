"""`mlgate monitor` on Airflow's schedule: the same run as deploy/systemd/mlgate-monitor.service.

Put this file in Airflow's dags folder. The task runs mlgate from its own checkout and `.venv` (never in
Airflow's environment: the two pin different libraries), as a worker's shell command:

- ``MLGATE_HOME``: the checkout at main, with `.venv` from `make .venv/.installed` (default /opt/mlgate);
- ``MLGATE_MONITOR_SCHEDULE``: a cron expression (default daily at 05:17 UTC); keep params.yaml's
  ``monitor.every_hours`` in step, since the lateness alert (monitoring/alerts.yml) reads it;
- what `mlgate monitor` reads, in the worker's environment: ``MLFLOW_TRACKING_URI``,
  ``MLGATE_PREDICTION_LOG``, ``MLGATE_TEXTFILE`` or ``MLGATE_PUSHGATEWAY``, ``GH_TOKEN`` (optional).

Exit 2 is a breach whose retraining branch was opened: the run succeeds. Any other failure fails the task
without a retry (the next scheduled run is the retry), so the exported last-success time stays where it
was and ``MlgateMonitorLate`` fires. One run at a time: a monitor still opening a retraining branch is
never overtaken by the next.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

MLGATE_HOME = os.environ.get("MLGATE_HOME", "/opt/mlgate")
SCHEDULE = os.environ.get("MLGATE_MONITOR_SCHEDULE", "17 5 * * *")

# The prediction log given only when set, as the systemd unit's EnvironmentFile gives it.
MONITOR = (
    '"$MLGATE_HOME/.venv/bin/mlgate" monitor ${MLGATE_PREDICTION_LOG:+--prediction-log "$MLGATE_PREDICTION_LOG"}'
    " || [ $? -eq 2 ]"
)

with DAG(
    dag_id="mlgate_monitor",
    description="mlgate monitor: the served model's live traffic against its training data",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["mlgate"],
    doc_md=__doc__,
):
    BashOperator(
        task_id="monitor",
        bash_command=MONITOR,
        cwd=MLGATE_HOME,
        env={"MLGATE_HOME": MLGATE_HOME, "MLFLOW_DISABLE_TELEMETRY": "true"},
        append_env=True,
        retries=0,
        execution_timeout=timedelta(hours=2),
    )
