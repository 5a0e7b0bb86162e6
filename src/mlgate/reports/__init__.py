"""What a reviewer reads: the promotion report, the model card and the gate's plots, rendered from the
stages' results."""
