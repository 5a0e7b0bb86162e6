"""The registry's vocabulary, shared by the gate, promotion, serving and monitoring: one place to
read which alias means what and where a run keeps what a later step needs."""

CANDIDATE_ALIAS = "staging"  # the gate grants it to a version that passed every check
CHAMPION_ALIAS = "production"  # what serving and monitoring follow; moved only by `mlgate promote`
REFERENCE_DIR = "reference"  # the train run's artifact folder of the training sample ...
REFERENCE_FILE = "train_sample.parquet"  # ... that monitoring compares live data with
ERASURE_DIR = "erasure"  # the train run's artifact folder of the hashed ids its version was trained and tested on
ERASURE_FILE = "ids.parquet"  # ... that `mlgate forget` searches
PROVENANCE_DIR = "provenance"  # the train run's artifact folder of the digests of the rows its version trained on
TRAINED_ROWS_FILE = "train_rows.npz"  # ... that the gate leaves out of the comparison with that version
