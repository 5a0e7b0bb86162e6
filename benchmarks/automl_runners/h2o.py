"""H2O AutoML with its defaults: `H2OAutoML(max_runtime_secs=--budget, seed=--seed)` on a fresh local cluster.

The cluster listens on 127.0.0.1 only, on a free port (H2O also takes the next one), with --threads threads,
its ice_root under --workdir, and is shut down on the way out. The test frame gets the training frame's
column types; the target is an enum for classification. H2O ranks models by the metric the harness scores
(AUC, logloss, RMSE). Its budget is in whole seconds, so --budget is rounded. Protocol: _shared/automl_protocol.py.
"""

import os
import socket
import sys
import time

# This file is named after the package it runs: keep its folder off sys.path so that the package is found
# (even a namespace package such as autogluon), and the protocol helpers at the end of it.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != HERE] + [os.path.join(HERE, "_shared")]

import automl_protocol as protocol  # noqa: E402
import h2o  # noqa: E402
from h2o.automl import H2OAutoML  # noqa: E402

SORT_METRIC = {"binary": "AUC", "multiclass": "logloss", "regression": "RMSE"}


def free_port_pair() -> int:
    """A port p on 127.0.0.1 such that p and p + 1 are both free (H2O uses both)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


def main() -> None:
    args = protocol.parse_args(__doc__.splitlines()[0])
    train, test = protocol.load(args)
    ice_root = args.workdir / "ice"
    ice_root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    h2o.no_progress()
    h2o.init(
        ip="127.0.0.1",
        port=free_port_pair(),
        bind_to_localhost=True,
        nthreads=args.threads,
        max_mem_size="6G",
        ice_root=str(ice_root),
        log_dir=str(args.workdir / "logs"),
        verbose=False,
    )
    try:
        types = {args.target: "enum"} if args.task != "regression" else None
        train_frame = h2o.H2OFrame(train, column_types=types)
        test_frame = h2o.H2OFrame(test, column_types={c: train_frame.types[c] for c in test.columns})
        setup_s = time.perf_counter() - start
        automl = H2OAutoML(
            max_runtime_secs=max(1, round(args.budget)),
            seed=args.seed,
            sort_metric=SORT_METRIC[args.task],
            verbosity=None,
        )
        start = time.perf_counter()
        automl.train(y=args.target, training_frame=train_frame)
        fit_s = time.perf_counter() - start
        predicted = automl.leader.predict(test_frame).as_data_frame(use_multi_thread=False)
        if args.task == "regression":
            protocol.write_predictions(args, predicted["predict"])
        elif args.task == "binary":
            protocol.write_predictions(args, predicted[args.positive_class])
        else:
            classes = train_frame[args.target].levels()[0]
            protocol.write_predictions(args, predicted[classes], classes)
        protocol.write_summary(
            args,
            fit_s,
            setup_s=round(setup_s, 3),
            best_model=automl.leader.model_id,
            models=int(automl.leaderboard.nrows),
        )
    finally:
        cluster = h2o.cluster()
        if cluster is not None:
            cluster.shutdown()


if __name__ == "__main__":
    main()
