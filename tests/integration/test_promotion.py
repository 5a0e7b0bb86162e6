"""promote / rollback / history against a real SQLite MLflow registry: the compare-and-set, the
`previous` alias, the hash-chained ledger, and a crash at every step of a promotion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlgate import promote as promotion
from mlgate import tracking
from mlgate.project import StageError

MODEL = "churn"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Path:
    """A store holding versions 1-3 of MODEL that passed the gate (4 did not), no alias: made once,
    copied for each test (a new store and four registrations cost seconds)."""
    store = tmp_path_factory.mktemp("registered") / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        for number in range(1, 5):
            run_id = tracking.create_run("promotion", "train", {})
            version = tracking.register(MODEL, f"runs:/{run_id}/model", run_id)
            assert version.version == number
            tracking.set_version_tags(MODEL, number, {"mlgate.gate.passed": "true" if number < 4 else "false",
                                                      "mlgate.data_hash": f"hash{number}",
                                                      tracking.DIGEST_TAG: digest(number)})
    return store


@pytest.fixture
def registry(registered, tmp_path, monkeypatch):
    """This test's own copy of the ``registered`` store; returns the ledger path."""
    shutil.copy(registered, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLGATE_USER", "tester")
    return tmp_path / "registry/ledger.jsonl"


def digest(version: int) -> str:
    """The artifact digest the fixture's gate recorded on ``version`` (these versions have no files)."""
    return f"{version:064x}"


def candidate(version: int) -> None:
    """What the gate does for a passing version: it takes `staging`."""
    tracking.set_alias(MODEL, "staging", version)


def holders() -> dict[str, int | None]:
    return {alias: promotion._held(MODEL, alias) for alias in ("production", "previous")}


def test_promote_keeps_the_old_holder_under_previous_and_records_every_move(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    move = promotion.promote(MODEL, 2, "production", "better", expected=1, ledger=registry)

    assert holders() == {"production": 2, "previous": 1}
    assert move["from_version"] == 1 and move["data_hash"] == "hash2" and move["by"] == "tester"
    tags = tracking.get_version(MODEL, 2).tags
    assert tags["mlgate.production.from_version"] == "1" and tags["mlgate.production.reason"] == "better"
    moves, problems = promotion.history(MODEL, registry)
    assert problems == [] and [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2)]


def test_rollback_restores_previous_in_one_command_and_can_be_undone(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    promotion.promote(MODEL, 2, "production", "second", ledger=registry)

    promotion.rollback(MODEL, "production", "v2 misbehaves", ledger=registry)
    assert holders() == {"production": 1, "previous": 2}
    promotion.rollback(MODEL, "production", "false alarm", ledger=registry)
    assert holders() == {"production": 2, "previous": 1}
    assert [m["action"] for m in promotion.history(MODEL, registry)[0]] == ["promote", "promote", "rollback", "rollback"]


@pytest.mark.parametrize("version, message", [
    (4, "did not pass the gate"), (3, "does not hold 'staging'"), (9, "has no version 9"),
])
def test_promote_refuses_what_the_gate_did_not_pass(registry, version, message):
    candidate(4 if version == 4 else 1)
    with pytest.raises(StageError, match=message):
        promotion.promote(MODEL, version, "production", "x", ledger=registry)
    assert holders() == {"production": None, "previous": None} and not registry.exists()


def test_compare_and_set_refuses_when_the_alias_moved_since_the_caller_looked(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)

    with pytest.raises(StageError, match="'production' moved to v1 since you saw no version"):
        promotion.promote(MODEL, 2, "production", "stale view", expected=None, ledger=registry)
    assert holders() == {"production": 1, "previous": None}
    assert len(promotion.read_ledger(registry)) == 1


CONCURRENT = textwrap.dedent("""
    import sys, time
    from mlgate import promote as promotion
    from mlgate.project import StageError
    action, start_at, ledger = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    time.sleep(max(0.0, start_at - time.time()))
    try:
        if action == "promote":
            promotion.promote("churn", 2, "production", "A", expected=1, ledger=ledger)
        else:
            promotion.rollback("churn", "production", "B", expected=1, ledger=ledger)
        print("WON")
    except StageError as error:
        print("LOST", error)
""")


def test_two_concurrent_promoters_cannot_both_win(registry):
    candidate(3)
    promotion.promote(MODEL, 3, "production", "setup", ledger=registry)
    candidate(1)
    promotion.promote(MODEL, 1, "production", "setup", ledger=registry)   # production 1, previous 3
    candidate(2)
    start_at = __import__("time").time() + 4  # both interpreters import mlflow first, then start together
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, action, str(start_at), str(registry)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
            for action in ("promote", "rollback")]
    outcomes = [run.communicate(timeout=120)[0].strip().splitlines()[-1] for run in runs]

    assert sorted(o.split()[0] for o in outcomes) == ["LOST", "WON"], outcomes
    assert "since you saw v1" in next(o for o in outcomes if o.startswith("LOST"))
    moves, problems = promotion.history(MODEL, registry)
    assert problems == [] and len(moves) == 3
    assert holders()["production"] in (2, 3)


CRASH = textwrap.dedent("""
    import os, sys
    from mlgate import promote as promotion
    crash_after, ledger = int(sys.argv[1]), sys.argv[2]
    calls = 0
    def crashing(function):
        def wrapper(*args, **kwargs):
            global calls
            result = function(*args, **kwargs)
            calls += 1
            if calls == crash_after:
                os._exit(9)   # killed: no cleanup, no finally, the lock stays taken
            return result
        return wrapper
    for name in ("set_model_tag", "set_alias", "set_version_tags", "delete_model_tag"):
        setattr(promotion.tracking, name, crashing(getattr(promotion.tracking, name)))
    promotion._append = crashing(promotion._append)
    promotion.promote("churn", 2, "production", "crashy", expected=1, ledger=ledger)
    print("completed")
""")

# The writes of one promotion, in order: pending tag, `previous`, `production` (the commit point),
# version tags, ledger line, head tag, pending tag removed.
WRITES = 7


@pytest.mark.parametrize("crash_after", range(1, WRITES))
def test_a_crash_at_any_step_leaves_the_registry_before_or_after(registry, crash_after):
    candidate(3)
    promotion.promote(MODEL, 3, "production", "setup", ledger=registry)
    candidate(1)
    promotion.promote(MODEL, 1, "production", "setup", ledger=registry)   # production 1, previous 3
    candidate(2)
    before = holders()

    crashed = subprocess.run([sys.executable, "-c", CRASH, str(crash_after), str(registry)],
                             capture_output=True, text=True, env=os.environ.copy())
    assert crashed.returncode == 9, crashed.stderr

    with promotion._Lock(MODEL):   # the dead holder's lock is broken at once
        promotion.recover(MODEL, registry)
    moves, problems = promotion.history(MODEL, registry)
    assert problems == []
    assert "mlgate.move.pending" not in tracking.model_tags(MODEL)
    if crash_after < 3:   # before the commit point: fully as before
        assert holders() == before and len(moves) == 2
        assert "mlgate.production.reason" not in tracking.get_version(MODEL, 2).tags
    else:                 # at or after it: fully as after
        assert holders() == {"production": 2, "previous": 1} and len(moves) == 3
        assert tracking.get_version(MODEL, 2).tags["mlgate.production.reason"] == "crashy"


@pytest.mark.parametrize("tamper, message", [
    (lambda lines: lines[:-1], "truncated"),
    (lambda lines: [lines[0].replace('"first"', '"edited"'), *lines[1:]], "record 1 was edited"),
    (lambda lines: [lines[1], lines[0]], "removed or reordered"),
])
def test_an_edited_or_truncated_ledger_is_detected(registry, tamper, message):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    promotion.promote(MODEL, 2, "production", "second", ledger=registry)

    lines = registry.read_text().splitlines()
    registry.write_text("\n".join(tamper(lines)) + "\n")

    _, problems = promotion.history(MODEL, registry)
    assert any(message in p for p in problems), problems


def test_ledger_records_are_chained_json_lines(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    promotion.promote(MODEL, 2, "production", "second", ledger=registry)

    first, second = (json.loads(line) for line in registry.read_text().splitlines())
    assert second["prev"] == first["hash"] and first["prev"] == ""
    assert tracking.model_tags(MODEL)["mlgate.ledger.head"] == second["hash"]
    assert {"who", "when"}.isdisjoint(first) and {"by", "at", "reason", "commit", "data_hash", "gate_hash"} <= set(first)


def test_cli_promotes_from_a_merged_gate_report_only_over_the_champion_it_was_measured_against(registry, tmp_path,
                                                                                               monkeypatch):
    from click.testing import CliRunner

    from mlgate.cli import main

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    report = {"passed": True, "reasons": [], "candidate": {"name": MODEL, "version": 2}, "champion": {"version": 1}}
    (tmp_path / "gate.json").write_text(json.dumps(report))
    stale = {**report, "champion": None}
    (tmp_path / "stale.json").write_text(json.dumps(stale))

    refused = CliRunner().invoke(main, ["promote", "--from-gate", "stale.json", "--model", MODEL])
    assert refused.exit_code == 1 and "'production' moved to v1 since you saw no version" in refused.output
    done = CliRunner().invoke(main, ["promote", "--from-gate", "gate.json", "--model", MODEL, "--reason", "merged"])
    assert done.exit_code == 0, done.output
    assert holders() == {"production": 2, "previous": 1}
    assert promotion.read_ledger(registry)[-1]["reason"] == "merged"
