"""AutoGluon's TabularPredictor with its default presets: `fit(train, time_limit=--budget, num_cpus=--threads)`.

The predictor optimizes the metric the harness scores (roc_auc, log_loss, root_mean_squared_error), is told
the positive class, and takes --seed as its learner's random_state. Models go under --workdir. Protocol:
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
from autogluon.tabular import TabularPredictor  # noqa: E402

EVAL_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "root_mean_squared_error"}


def main() -> None:
    args = protocol.parse_args(__doc__.splitlines()[0])
    train, test = protocol.load(args)
    predictor = TabularPredictor(
        label=args.target,
        problem_type=args.task,
        eval_metric=EVAL_METRIC[args.task],
        path=str(args.workdir / "models"),
        verbosity=1,
        positive_class=args.positive_class,
        learner_kwargs={"random_state": args.seed},
    )
    start = time.perf_counter()
    predictor.fit(train, time_limit=args.budget, num_cpus=args.threads, num_gpus=0)
    fit_s = time.perf_counter() - start
    if args.task == "regression":
        protocol.write_predictions(args, predictor.predict(test))
    elif args.task == "binary":
        probabilities = predictor.predict_proba(test, as_multiclass=True)
        protocol.write_predictions(args, probabilities[args.positive_class])
    else:
        probabilities = predictor.predict_proba(test, as_multiclass=True)
        protocol.write_predictions(args, probabilities, probabilities.columns)
    protocol.write_summary(args, fit_s, best_model=predictor.model_best, models=len(predictor.model_names()))


if __name__ == "__main__":
    main()
