"""Personal data declared in the contract never appears in the clear in anything mlgate writes.

credit_data with four planted personal columns (an e-mail and a phone number dropped; an applicant id
and a postcode hashed, the postcode a feature) runs the whole pipeline, is served with the clear
values in every request, is scored by `mlgate score` and monitored; then every file of the project
(data, DVC cache, reports, MLflow store and artifacts, prediction log, scores) is searched for them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlgate.modelling.personal import PersonalData
from tests.helpers import copy_project, run_mlgate, run_stages, running, tracking_env

pytestmark = pytest.mark.slow

KEY = "planted-test-key-0123456789abcdef"
# Every planted value matches this; nothing mlgate writes may.
PLANTED = re.compile(rb"(?i)planted|PC\d\d 7NT|\+44 7700 9\d{5}")
PERSONAL_COLUMNS = {
    "applicant_id": {"type": "string", "role": "id", "pii": "direct", "handling": "hash"},
    "applicant_email": {"type": "string", "pii": "direct", "handling": "drop"},
    "phone": {"type": "string", "pii": "direct", "handling": "drop"},
    "postcode": {"type": "string", "pii": "quasi", "handling": "hash"},
}


def _plant(frame: pd.DataFrame) -> pd.DataFrame:
    rows = range(len(frame))
    return frame.assign(
        applicant_id=[f"APPLICANT-PLANTED-{i:05d}" for i in rows],
        applicant_email=[f"planted.applicant{i}@example.org" for i in rows],
        phone=[f"+44 7700 9{i:05d}" for i in rows],
        postcode=[f"PC{i % 40:02d} 7NT" for i in rows],
    )


def _declare(root: Path) -> None:
    conf = root / "conf/data/credit_data.yaml"
    text = conf.read_text()
    added = "".join(f"    {name}: {json.dumps(spec)}\n" for name, spec in PERSONAL_COLUMNS.items())
    conf.write_text(text.replace("  columns:\n", "  columns:\n" + added, 1))


def _clear_values_in(path: Path) -> list[str]:
    """What in ``path`` matches a planted value: Parquet read cell by cell (its pages may be
    compressed), anything else as bytes."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"PAR1":
        table = pq.read_table(path)
        texts = [str(value) for column in table.columns for value in column.to_pylist()]
        texts += table.column_names
        return [text for text in texts if PLANTED.search(text.encode())][:3]
    return [match.decode(errors="replace") for match in PLANTED.findall(path.read_bytes())[:3]]


def test_declared_personal_data_is_dropped_or_hashed_in_everything_mlgate_writes(tmp_path, monkeypatch):
    root = copy_project(tmp_path / "project", ["experiment=credit_data"])
    source = root / "data/source/credit_data.csv.gz"
    clear = _plant(pd.read_csv(source))
    clear.to_csv(source, index=False)
    _declare(root)
    run_mlgate(["params", "experiment=credit_data", "search.n_trials=3", "search.cv_folds=2"], root)
    env = tracking_env(root) | {"MLGATE_PII_KEY": KEY}

    result = run_stages(root, env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "personal data: dropped applicant_email, phone; hashed applicant_id, postcode" in result.stdout
    raw = pd.read_parquet(root / "data/raw/data.parquet")
    assert "applicant_email" not in raw.columns and "phone" not in raw.columns
    assert raw["postcode"].str.fullmatch(r"[0-9a-f]{32}").all() and raw["postcode"].nunique() == 40
    features = json.loads(next(root.glob("models/model/artifacts/features.json")).read_text())
    assert "postcode" in features["order"] and "applicant_email" not in features["order"]
    assert features["personal"] == {
        "drop": ["applicant_email", "phone"],
        "hash": ["applicant_id", "postcode"],
        "key_env": "MLGATE_PII_KEY",
    }
    card = (root / "reports/model_card.md").read_text()
    assert "| applicant_email | direct | drop: dropped where rows enter" in card
    assert "| postcode | quasi | hash: replaced by its keyed hash" in card and "`$MLGATE_PII_KEY`" in card

    # served with the clear values in every request: the model sees them hashed, the log holds no clear value
    from mlgate.services.serving import RegistrySource, ServeSettings

    requests_rows = clear.sample(30, random_state=0).drop(columns=["Status"])
    policy = PersonalData.from_dict(features["personal"])
    expected = mlflow.pyfunc.load_model(str(root / "models/model")).predict(policy.apply(requests_rows, KEY.encode()))
    monkeypatch.chdir(root)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    promoted = run_mlgate(["promote", "--alias", "production", "--version", "1"], root, env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    serving = ServeSettings(model="credit_data", alias="production", poll_s=0.2, log_dir=str(root / "data/predictions"))
    with running(serving) as live:
        answer = live.post({"dataframe_records": json.loads(requests_rows.to_json(orient="records"))})
        assert answer.ok, answer.text
    pd.testing.assert_frame_equal(pd.DataFrame(answer.json()["predictions"]), expected, check_dtype=False)

    # batch scoring: the id kept hashed; a dropped column cannot be kept
    batch = tmp_path / "applicants.csv"  # the user's own file, outside the project
    requests_rows.to_csv(batch, index=False)
    scored = run_mlgate(
        ["score", "--input", str(batch), "--output", "scored.csv", "--keep-columns", "applicant_id"], root, env
    )
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert pd.read_csv(root / "scored.csv")["applicant_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    refused = run_mlgate(
        ["score", "--input", str(batch), "--output", "emails.csv", "--keep-columns", "applicant_email"], root, env
    )
    assert refused.returncode == 1 and "handling: drop, so never written" in refused.stdout + refused.stderr
    monitored = run_mlgate(["monitor", "--no-retrain"], root, env)
    assert monitored.returncode == 0, monitored.stdout + monitored.stderr

    # nothing mlgate wrote holds a planted value in the clear (the source is the user's own input)
    written = [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(root / "data/source")]
    assert len(written) > 50 and any(p.suffix == ".parquet" for p in (root / "data/predictions").rglob("*"))
    assert _clear_values_in(batch) and _clear_values_in(root / "data/raw/data.parquet") == []  # the search finds them
    found = {str(p.relative_to(root)): hits for p in written if (hits := _clear_values_in(p))}
    assert found == {}

    # without the key the model does not load: no request is answered with unhashed values
    monkeypatch.delenv("MLGATE_PII_KEY")
    with pytest.raises(ValueError, match="MLGATE_PII_KEY is not set"):
        RegistrySource(serving).load("1")
