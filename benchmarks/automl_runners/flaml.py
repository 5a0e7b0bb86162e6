"""FLAML AutoML with its defaults: `AutoML().fit(X, y, time_budget=--budget, n_jobs=--threads, seed=--seed)`.

The metric FLAML optimizes is the one the harness scores: roc_auc, log_loss or rmse. Protocol:
_shared/automl_protocol.py.
"""

import os
import sys
import time

# This file is named after the package it runs: keep its folder off sys.path so that the package is found
# (even a namespace package such as autogluon), and the protocol helpers at the end of it.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != HERE] + [os.path.join(HERE, "_shared")]

import automl_protocol as protocol  # noqa: E402
from flaml import AutoML  # noqa: E402

TASKS = {
    "binary": ("classification", "roc_auc"),
    "multiclass": ("classification", "log_loss"),
    "regression": ("regression", "rmse"),
}


def main() -> None:
    args = protocol.parse_args(__doc__.splitlines()[0])
    train, test = protocol.load(args)
    X, y = train.drop(columns=[args.target]), train[args.target]
    task, metric = TASKS[args.task]
    automl, log = AutoML(), args.workdir / "flaml.log"
    start = time.perf_counter()
    automl.fit(
        X,
        y,
        task=task,
        metric=metric,
        time_budget=args.budget,
        n_jobs=args.threads,
        seed=args.seed,
        verbose=0,
        log_file_name=str(log),
        log_type="all",
    )
    fit_s = time.perf_counter() - start
    protocol.write_estimator_predictions(args, automl, test)
    trials = len(log.read_text().splitlines()) if log.exists() else None  # log_type="all": a line per trial
    protocol.write_summary(args, fit_s, best_model=automl.best_estimator, trials=trials, best_config=automl.best_config)


if __name__ == "__main__":
    main()
