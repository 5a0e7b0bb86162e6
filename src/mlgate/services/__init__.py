"""What runs around the pipeline: serving, the prediction log, batch scoring, monitoring, promotion
and the AutoML entry point for benchmarks."""
