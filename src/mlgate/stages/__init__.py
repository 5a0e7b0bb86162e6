"""One module per pipeline stage: a pure core function and a ``run(params)`` that does the I/O."""
