"""The machine learning itself, free of tracking and I/O: the dataset contract and target, the
preprocessing, the model families, ensembles, metrics and the pyfunc model that serves them."""
