"""Baseline: plain CatBoostClassifier/CatBoostRegressor with default parameters (the budget does not apply).

Categorical columns (those pandas read as text) go to CatBoost as native categoricals, with missing values as
the string "nan" (CatBoost does not accept NaN there); thread_count is --threads. Protocol: _shared/automl_protocol.py.
"""

import os
import sys
import time

# This file is named after the package it runs: keep its folder off sys.path so that the package is found
# (even a namespace package such as autogluon), and the protocol helpers at the end of it.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != HERE] + [os.path.join(HERE, "_shared")]

import automl_protocol as protocol  # noqa: E402
from catboost import CatBoostClassifier, CatBoostRegressor  # noqa: E402


def categorical(frame):
    return [c for c in frame.columns if frame[c].dtype.kind not in "biuf"]


def main() -> None:
    args = protocol.parse_args(__doc__.splitlines()[0])
    train, test = protocol.load(args)
    X, y = train.drop(columns=[args.target]), train[args.target]
    cats = categorical(X)
    X[cats], test[cats] = X[cats].astype(str), test[cats].astype(str)
    estimator = CatBoostRegressor if args.task == "regression" else CatBoostClassifier
    model = estimator(random_seed=args.seed, thread_count=args.threads, verbose=0, allow_writing_files=False)
    start = time.perf_counter()
    model.fit(X, y, cat_features=cats)
    fit_s = time.perf_counter() - start
    protocol.write_estimator_predictions(args, model, test)
    protocol.write_summary(args, fit_s, trees=model.tree_count_, cat_features=len(cats))


if __name__ == "__main__":
    main()
