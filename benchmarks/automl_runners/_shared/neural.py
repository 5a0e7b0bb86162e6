"""What the neural runners (realmlp.py, tabm.py) share: pytabkit's scikit-learn interface fitted with its
defaults on CPU. pytabkit refuses missing values in numeric columns, so they are filled with the training
median (the same preprocessing for both families); text columns go in as categoricals."""

from __future__ import annotations

import time

import automl_protocol as protocol
import pandas as pd


def prepared(X: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Copies of the training and test features as pytabkit takes them, and the categorical columns: numeric
    gaps filled with the training median (0 where a column has none), text as categoricals ("nan" a level)."""
    categorical = [c for c in X.columns if X[c].dtype.kind not in "biuf"]
    numeric = [c for c in X.columns if c not in categorical]
    medians = X[numeric].median().fillna(0.0)
    X, test = X.copy(), test.copy()
    for frame in (X, test):
        frame[numeric] = frame[numeric].astype(float).fillna(medians)
        frame[categorical] = frame[categorical].astype(str).astype("category")
    return X, test, categorical


def run(description: str, classifier, regressor) -> None:
    args = protocol.parse_args(description)
    train, test = protocol.load(args)
    X, test, categorical = prepared(train.drop(columns=[args.target]), test)
    y = train[args.target]
    estimator = regressor if args.task == "regression" else classifier
    model = estimator(random_state=args.seed, n_threads=args.threads, device="cpu", verbosity=0)
    start = time.perf_counter()
    model.fit(X, y, cat_col_names=categorical)
    fit_s = time.perf_counter() - start
    protocol.write_estimator_predictions(args, model, test)
    protocol.write_summary(args, fit_s, cat_features=len(categorical))
