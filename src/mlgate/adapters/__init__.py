"""The only modules that import MLflow (``tracking``), Optuna (``optuna_study``) and Evidently
(``evidently_drift``), plus the data sources (files, SQL, HTTP). Each returns plain data, so a
library upgrade touches one file."""
