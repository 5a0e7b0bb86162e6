"""mlgate's AutoML: `mlgate.services.automl.fit(train, target, task, budget_s=, seed=, workdir=)`,
run in the project's .venv.

For binary tasks the positive class is passed to fit; `model.predict_proba` then gives its probability.
For multiclass, `model.predict_proba` gives one column per class, in the order of `model.classes_` (text labels).
`model.summary` (trials, tracking_s, chosen model, ...) is copied into the summary. Protocol:
_shared/automl_protocol.py. For an ablation, `MLGATE_AUTOML_OVERRIDES` (Hydra overrides, space-separated,
e.g. `portfolio=none`) goes to fit as its `overrides`.
"""

import os
import sys
import time

# This file is named after the package it runs: keep its folder off sys.path so that the package is found
# (even a namespace package such as autogluon), and the protocol helpers at the end of it.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != HERE] + [os.path.join(HERE, "_shared")]

import automl_protocol as protocol  # noqa: E402
import numpy as np  # noqa: E402

from mlgate.services import automl  # noqa: E402


def main() -> None:
    args = protocol.parse_args(__doc__.splitlines()[0])
    train, test = protocol.load(args)
    options = {"positive_class": args.positive_class} if args.task == "binary" else {}
    options["overrides"] = os.environ.get("MLGATE_AUTOML_OVERRIDES", "").split()
    start = time.perf_counter()
    model = automl.fit(
        train, args.target, args.task, budget_s=args.budget, seed=args.seed, workdir=args.workdir, **options
    )
    fit_s = time.perf_counter() - start
    if args.task == "regression":
        protocol.write_predictions(args, model.predict(test))
    elif args.task == "binary":
        protocol.write_predictions(args, np.asarray(model.predict_proba(test)).reshape(-1))
    else:
        protocol.write_predictions(args, model.predict_proba(test), model.classes_)
    extras = {key: value for key, value in (model.summary or {}).items() if key != "fit_s"}
    protocol.write_summary(args, fit_s, **extras)


if __name__ == "__main__":
    main()
