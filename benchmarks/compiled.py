"""Model-call latency: the compiled few-row path (src/mlgate/modelling/compiled.py) against the
plain scikit-learn pipelines.

Fits, on the bundled telco churn rows (the contract in params.yaml), an ensemble like the one the
default pipeline finishes with: a caruana FinalModel over a linear model, a 200-tree random forest and
CatBoost, predicting on one thread as served. Then times `predict_proba` on frames of 1 to 4,000 rows,
the whole ensemble and each member on the guard's output, compiled and not (the baseline, measured in
the same run, alternating), and checks that both give the same bits. Prints medians in ms and the ratio.
Run: `.venv/bin/python benchmarks/compiled.py [--rows 1,4,100,1000,4000] [--repeats 200] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread cap
import pandas as pd  # noqa: E402

from mlgate import config
from mlgate.modelling import compiled, models  # noqa: E402
from mlgate.modelling.data import DataSpec, conform, target_vector  # noqa: E402
from mlgate.modelling.ensemble import FinalModel  # noqa: E402
from mlgate.modelling.features import FeatureSettings  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMBERS = {
    "linear": {"alpha": 0.33},
    "random_forest": {"n_estimators": 200, "max_depth": 19, "min_samples_leaf": 49},
    "catboost": {"iterations": 300, "depth": 6, "learning_rate": 0.05},
}


def ensemble() -> tuple[FinalModel, pd.DataFrame]:
    os.chdir(REPO)
    params = config.read_params()
    spec = config.build(DataSpec, params["data"], "data")
    frame = conform(pd.read_csv(spec.source.path), spec)
    settings = FeatureSettings(clip_quantiles=params["features"]["clip_quantiles"])
    members = [models.build(family, p, spec, settings, seed=0) for family, p in MEMBERS.items()]
    model = FinalModel(members, {"method": "caruana", "weights": [0.4, 0.3, 0.3]}, task="binary")
    model.fit(frame[spec.features], target_vector(frame, spec))
    model.members_ = [models.serial_predictions(m) for m in model.members_]
    return model, frame[spec.features].sample(frac=1.0, random_state=1).reset_index(drop=True)


def uncompiled(model: FinalModel) -> FinalModel:
    """A copy whose members stay plain pipelines (pickling leaves the compiled ones out): the baseline."""
    plain = copy.deepcopy(model)
    compile_pipeline = compiled.compile_pipeline
    compiled.compile_pipeline = lambda pipeline: None
    try:
        return plain.prepare()
    finally:
        compiled.compile_pipeline = compile_pipeline


def median_ms(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,4,100,1000,4000")
    parser.add_argument("--repeats", type=int, default=200, help="calls per measurement (fewer for large frames)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model, rows = ensemble()
    plain = uncompiled(model)
    guard, fast_members = model.prepare()._guarded_members
    _, plain_members = plain._guarded_members
    print(f"telco churn, {len(rows):,} rows; ensemble of {', '.join(MEMBERS)}; median ms per call")
    print(f"{'rows':>6}  {'part':<16} {'compiled':>9} {'pipeline':>9} {'ratio':>7}  same bits")
    results = []
    for n in [int(r) for r in args.rows.split(",")]:
        X = rows.iloc[:n]
        guarded = guard.transform(X)
        repeats = max(5, args.repeats * 4 // (4 + n // 100))
        parts = [("ensemble", model.predict_proba, plain.predict_proba, X)]
        parts += [
            (family, f.predict_proba, p.predict_proba, guarded)
            for family, f, p in zip(MEMBERS, fast_members, plain_members, strict=True)
        ]
        for name, fast_call, plain_call, frame in parts:
            fast_ms = median_ms(lambda c=fast_call, f=frame: c(f), repeats)
            plain_ms = median_ms(lambda c=plain_call, f=frame: c(f), repeats)
            same = bool(np.array_equal(fast_call(frame), plain_call(frame)))
            results.append(
                {
                    "rows": n,
                    "part": name,
                    "compiled_ms": fast_ms,
                    "pipeline_ms": plain_ms,
                    "ratio": plain_ms / fast_ms,
                    "same": same,
                }
            )
            print(
                f"{n:>6}  {name:<16} {fast_ms:>9.2f} {plain_ms:>9.2f} {plain_ms / fast_ms:>6.1f}x  "
                f"{'yes' if same else 'NO'}"
            )
    if not all(isinstance(m, compiled.CompiledPipeline) for m in fast_members):
        raise SystemExit("a member was not compiled: the comparison above is pipeline against pipeline")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
