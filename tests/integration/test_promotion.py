"""promote / rollback / history against a real SQLite MLflow registry: the compare-and-set, the
`previous` alias, the hash-chained ledger, and a crash at every step of a promotion."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.gating.shadow import EVIDENCE_TAG, ShadowRule
from mlgate.services import promote as promotion
from tests.factories import SHADOW_EVIDENCE

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
            tracking.set_version_tags(
                MODEL,
                number,
                {
                    "mlgate.gate.passed": "true" if number < 4 else "false",
                    "mlgate.data_hash": f"hash{number}",
                    tracking.DIGEST_TAG: digest(number),
                },
            )
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
    assert [m["action"] for m in promotion.history(MODEL, registry)[0]] == [
        "promote",
        "promote",
        "rollback",
        "rollback",
    ]


@pytest.mark.parametrize(
    "version, message",
    [
        (4, "did not pass the gate"),
        (3, "does not hold 'staging'"),
        (9, "has no version 9"),
    ],
)
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


# The contenders' last step: A promotes v2, B rolls back to v3, both having seen v1 on production.
CONTEND = textwrap.dedent("""
    try:
        if role == "A":
            promotion.promote("churn", 2, "production", "A", expected=1, ledger=ledger)
        else:
            promotion.rollback("churn", "production", "B", expected=1, ledger=ledger)
        print("WON")
    except StageError as error:
        print("LOST", error)
""")

CONCURRENT = (
    textwrap.dedent("""
    import sys, time
    from mlgate.services import promote as promotion
    from mlgate.errors import StageError
    role, start_at, ledger = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    time.sleep(max(0.0, start_at - time.time()))
""")
    + CONTEND
)


def test_two_concurrent_promoters_cannot_both_win(registry):
    candidate(3)
    promotion.promote(MODEL, 3, "production", "setup", ledger=registry)
    candidate(1)
    promotion.promote(MODEL, 1, "production", "setup", ledger=registry)  # production 1, previous 3
    candidate(2)
    start_at = time.time() + 4  # both interpreters import mlflow first, then start together
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, role, str(start_at), str(registry)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for role in ("A", "B")
    ]
    outcomes = [run.communicate(timeout=120)[0].strip().splitlines()[-1] for run in runs]

    assert sorted(o.split()[0] for o in outcomes) == ["LOST", "WON"], outcomes
    assert "since you saw v1" in next(o for o in outcomes if o.startswith("LOST"))
    moves, problems = promotion.history(MODEL, registry)
    assert problems == [] and len(moves) == 3
    assert holders()["production"] in (2, 3)


CRASH = textwrap.dedent("""
    import os, sys
    from mlgate.services import promote as promotion
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
    promotion.promote(MODEL, 1, "production", "setup", ledger=registry)  # production 1, previous 3
    candidate(2)
    before = holders()

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(crash_after), str(registry)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert crashed.returncode == 9, crashed.stderr

    with promotion._Lock(MODEL):  # the dead holder's lock is broken at once
        promotion.recover(MODEL, registry)
    moves, problems = promotion.history(MODEL, registry)
    assert problems == []
    assert "mlgate.move.pending" not in tracking.model_tags(MODEL)
    if crash_after < 3:  # before the commit point: fully as before
        assert holders() == before and len(moves) == 2
        assert "mlgate.production.reason" not in tracking.get_version(MODEL, 2).tags
    else:  # at or after it: fully as after
        assert holders() == {"production": 2, "previous": 1} and len(moves) == 3
        assert tracking.get_version(MODEL, 2).tags["mlgate.production.reason"] == "crashy"


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda lines: lines[:-1], "truncated"),
        (lambda lines: [lines[0].replace('"first"', '"edited"'), *lines[1:]], "record 1 was edited"),
        (lambda lines: [lines[1], lines[0]], "removed or reordered"),
    ],
)
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
    assert {"who", "when"}.isdisjoint(first) and {"by", "at", "reason", "commit", "data_hash", "gate_hash"} <= set(
        first
    )


def test_cli_promotes_from_a_merged_gate_report_only_over_the_champion_it_was_measured_against(
    registry, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from mlgate.cli import main

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    report = {
        "passed": True,
        "reasons": [],
        "candidate": {"name": MODEL, "version": 2, "model_sha256": digest(2)},
        "champion": {"version": 1},
    }
    (tmp_path / "gate.json").write_text(json.dumps(report))
    stale = {**report, "champion": None}
    (tmp_path / "stale.json").write_text(json.dumps(stale))

    refused = CliRunner().invoke(main, ["promote", "--from-gate", "stale.json", "--model", MODEL])
    assert refused.exit_code == 1 and "'production' moved to v1 since you saw no version" in refused.output
    done = CliRunner().invoke(main, ["promote", "--from-gate", "gate.json", "--model", MODEL, "--reason", "merged"])
    assert done.exit_code == 0, done.output
    assert holders() == {"production": 2, "previous": 1}
    assert promotion.read_ledger(registry)[-1]["reason"] == "merged"


def production_1_previous_3_staging_2(ledger: Path) -> None:
    candidate(3)
    promotion.promote(MODEL, 3, "production", "setup", ledger=ledger)
    candidate(1)
    promotion.promote(MODEL, 1, "production", "setup", ledger=ledger)
    candidate(2)


def run_script(script: str, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        **popen,
    )


def outcome(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=180)
    lines = out.strip().splitlines()
    assert lines, err
    return lines[-1]


# Barriers between processes are files: each waits for another's file, never for time to pass.
BARRIERS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    def signal(name):
        (BARRIER_DIR / name).touch()
    def wait_for(*names):
        deadline = time.monotonic() + 120
        while not any((BARRIER_DIR / n).exists() for n in names):
            if time.monotonic() > deadline:
                sys.exit(f"gave up waiting for {names}")
            time.sleep(0.01)
""")

DIES_HOLDING_THE_LOCK = (
    "import os\nfrom mlgate.services import promote\nwith promote._Lock('churn'):\n    os._exit(9)\n"
)

# A sees the holder is dead and stops right there; B then takes the lock over and stops at its alias
# write until A has made its own attempt on the lock (refused, or into the critical section).
STEAL = (
    BARRIERS
    + textwrap.dedent("""
    from mlgate.services import promote as promotion
    from mlgate.errors import StageError
    role, BARRIER_DIR, ledger = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    resumed = False
    real_dead, real_try, real_alias = promotion._dead_here, promotion.tracking.try_lock, promotion.tracking.set_alias

    def dead_here(owner):
        global resumed
        dead = real_dead(owner)
        if role == "A" and dead and not resumed:
            signal("A_saw_dead")
            wait_for("B_at_commit")
            resumed = True
        return dead

    def try_lock(*args, **kwargs):
        taken = real_try(*args, **kwargs)
        if role == "A" and resumed and not taken:
            signal("A_refused")
        return taken

    def set_alias(model, alias, version):
        if alias == "production":
            signal(f"{role}_at_commit")
            if role == "B":
                wait_for("A_refused", "A_at_commit")
        return real_alias(model, alias, version)

    promotion._dead_here, promotion.tracking.try_lock, promotion.tracking.set_alias = dead_here, try_lock, set_alias
    if role == "B":
        wait_for("A_saw_dead")
""")
    + CONTEND
)


@pytest.mark.slow  # three more interpreters, each importing mlflow
def test_a_promoter_that_saw_a_dead_holder_cannot_take_the_lock_its_successor_took(registry, tmp_path):
    production_1_previous_3_staging_2(registry)
    died = run_script(DIES_HOLDING_THE_LOCK)
    died.communicate(timeout=120)
    assert died.returncode == 9
    (tmp_path / "barriers").mkdir()

    a, b = (run_script(STEAL, role, tmp_path / "barriers", registry) for role in ("A", "B"))
    won_a, won_b = outcome(a), outcome(b)

    assert won_b == "WON" and won_a.startswith("LOST"), (won_a, won_b)
    assert "'production' moved to v3 since you saw v1" in won_a
    moves, problems = promotion.history(MODEL, registry)
    assert problems == [] and [m["reason"] for m in moves] == ["setup", "setup", "B"]
    assert holders() == {"production": 3, "previous": 1}


# H stops after its first write (the pending tag) while the test expires its lease and moves the alias
# itself; H then resumes, as a process stalled past its lease would.
STALLS = BARRIERS + textwrap.dedent("""
    from mlgate.services import promote as promotion
    from mlgate.errors import StageError
    BARRIER_DIR, ledger = Path(sys.argv[1]), sys.argv[2]
    promotion.LOCK_TTL_S = 3600.0   # no renewal while the test expires the lease by hand
    real_tag = promotion.tracking.set_model_tag

    def set_model_tag(model, key, value):
        real_tag(model, key, value)
        if key == promotion.PENDING_TAG:
            signal("H_pending")
            wait_for("T_done")

    promotion.tracking.set_model_tag = set_model_tag
    try:
        promotion.promote("churn", 2, "production", "H", expected=1, ledger=ledger)
        print("WON")
    except StageError as error:
        print("LOST", error)
""")


@pytest.mark.slow  # another interpreter importing mlflow, racing this one
def test_a_holder_stalled_past_its_lease_writes_nothing_after_a_takeover(registry, tmp_path):
    production_1_previous_3_staging_2(registry)
    barriers = tmp_path / "barriers"
    barriers.mkdir()
    stalled = run_script(STALLS, barriers, registry)
    deadline = time.monotonic() + 120
    while not (barriers / "H_pending").exists() and stalled.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (barriers / "H_pending").exists(), stalled.communicate()
    store = tracking.client()
    for lock in store.search_registered_models(filter_string=f"name LIKE '{MODEL}.promotion-lock%'"):
        store.set_registered_model_tag(lock.name, "expires", "0")  # H's lease ran out

    promotion.rollback(MODEL, "production", "T", expected=1, ledger=registry)
    (barriers / "T_done").touch()

    result = outcome(stalled)
    assert result.startswith("LOST") and "lost the registry lock" in result, result
    assert holders() == {"production": 3, "previous": 1}
    moves, problems = promotion.history(MODEL, registry)
    assert problems == [] and [m["reason"] for m in moves] == ["setup", "setup", "T"]
    assert promotion.PENDING_TAG not in tracking.model_tags(MODEL)


def test_the_lock_leaves_at_most_its_last_generation_in_the_registry(registry):
    production_1_previous_3_staging_2(registry)
    promotion.promote(MODEL, 2, "production", "third", ledger=registry)

    store = tracking.client()
    locks = store.search_registered_models(filter_string=f"name LIKE '{MODEL}.promotion-lock%'")
    assert [(m.name, m.tags["released"]) for m in locks] == [(f"{MODEL}.promotion-lock.3", "true")]


def test_a_move_over_a_truncated_ledger_is_refused_and_changes_nothing(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    promotion.promote(MODEL, 2, "production", "second", ledger=registry)
    cut = registry.read_text().splitlines()[:-1]
    registry.write_text("\n".join(cut) + "\n")

    with pytest.raises(StageError, match=r"refusing to move 'production'.*truncated.*git checkout <commit> --"):
        promotion.rollback(MODEL, "production", "hide it", ledger=registry)
    assert registry.read_text().splitlines() == cut
    assert holders() == {"production": 2, "previous": 1}
    assert any("truncated" in p for p in promotion.history(MODEL, registry)[1])


def _rehash(lines: list[str], edit) -> list[str]:
    """What someone without the key can do: edit, recompute every plain hash and relink the chain."""
    records, previous = [], ""
    for line in lines:
        record = edit(json.loads(line))
        record["prev"] = previous
        body = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True).encode()
        record["hash"] = previous = hashlib.sha256(body).hexdigest()
        records.append(json.dumps(record, sort_keys=True))
    return records


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: {**r, "reason": "edited"}, "record 1 was edited"),
        (lambda r: {k: v for k, v in {**r, "reason": "edited"}.items() if k != "mac"}, "no record is keyed"),
    ],
)
def test_a_keyed_ledger_cannot_be_rehashed_without_the_key(registry, monkeypatch, edit, message):
    monkeypatch.setenv("MLGATE_LEDGER_KEY", "secret")
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    promotion.promote(MODEL, 2, "production", "second", ledger=registry)
    assert promotion.history(MODEL, registry)[1] == []
    forged = _rehash(registry.read_text().splitlines(), edit)
    registry.write_text("\n".join(forged) + "\n")
    tracking.set_model_tag(MODEL, promotion.HEAD_TAG, json.loads(forged[-1])["hash"])  # registry write access too

    problems = promotion.history(MODEL, registry)[1]
    assert any(message in p for p in problems), problems
    with pytest.raises(StageError, match=message):
        promotion.rollback(MODEL, "production", "x", ledger=registry)
    monkeypatch.delenv("MLGATE_LEDGER_KEY")
    if "mac" in json.loads(forged[0]):
        assert any("set MLGATE_LEDGER_KEY to verify it" in p for p in promotion.history(MODEL, registry)[1])


@pytest.mark.parametrize(
    "pending",
    [
        "{not json",
        "[1, 2]",
        '{"id": "x"}',
        '{"id": "x", "action": "promote", "model": "churn", "alias": "production", "to_version": "2"}',
    ],
)
def test_a_corrupt_pending_move_is_a_clear_error_and_nothing_moves(registry, pending):
    production_1_previous_3_staging_2(registry)
    tracking.set_model_tag(MODEL, promotion.PENDING_TAG, pending)

    with pytest.raises(StageError, match=r"mlgate.move.pending is not a move mlgate wrote .*delete the tag"):
        promotion.promote(MODEL, 2, "production", "x", ledger=registry)
    assert holders() == {"production": 1, "previous": 3}


def _cli(tmp_path, monkeypatch, *args: str):
    from click.testing import CliRunner

    from mlgate.cli import main

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    "report, message",
    [
        (
            {"candidate": {"name": MODEL, "version": "two"}, "champion": None},
            "'candidate.version' must be a registered version number, got 'two'",
        ),
        (
            {"candidate": {"name": MODEL, "version": 2.5}, "champion": None},
            "'candidate.version' must be a registered version number, got 2.5",
        ),
        ({"candidate": {"name": MODEL, "version": 2}, "champion": {"version": None}}, "'champion.version' must be"),
        ({"candidate": {"name": MODEL, "version": 2}, "champion": 1}, "'champion' must be an object or null"),
        ({"candidate": [MODEL, 2]}, "not a gate report"),
        (
            {"candidate": {"name": MODEL, "version": 2, "model_sha256": "0" * 64}, "champion": None},
            "is not the one the reviewed gate report names",
        ),
    ],
)
def test_cli_refuses_a_malformed_or_mismatched_gate_report_with_a_clear_error(
    registry, tmp_path, monkeypatch, report, message
):
    candidate(2)
    (tmp_path / "gate.json").write_text(json.dumps({"passed": True, "reasons": [], **report}))

    refused = _cli(tmp_path, monkeypatch, "promote", "--from-gate", "gate.json", "--model", MODEL)
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.output
    assert message in refused.output
    assert holders() == {"production": None, "previous": None}


def test_a_version_without_an_artifact_digest_is_not_promoted(registry, monkeypatch):
    tracking.client().delete_model_version_tag(MODEL, "2", tracking.DIGEST_TAG)
    candidate(2)
    with pytest.raises(StageError, match="has no artifact digest .*would refuse to load it"):
        promotion.promote(MODEL, 2, "production", "x", ledger=registry)
    monkeypatch.setenv(tracking.ALLOW_UNVERIFIED_ENV, "1")
    assert promotion.promote(MODEL, 2, "production", "trusted", ledger=registry)["model_sha256"] is None


def test_history_shows_a_record_with_missing_fields_and_fails(registry, tmp_path, monkeypatch):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    record = json.loads(registry.read_text())
    del record["at"], record["to_version"]
    registry.write_text(json.dumps(record) + "\n")

    shown = _cli(tmp_path, monkeypatch, "history", "--model", MODEL)
    assert shown.exit_code == 1 and isinstance(shown.exception, SystemExit), shown.output
    assert "record 1 was edited" in shown.output and "v?" in shown.output


def test_a_held_lock_renews_its_lease_and_is_released_on_exit(registry, monkeypatch):
    monkeypatch.setattr(promotion, "LOCK_TTL_S", 0.4)  # renewed every 0.1 s
    with promotion._Lock(MODEL) as held:

        def lease() -> dict[str, str]:
            return tracking.lock_generations(held.prefix)[held.generation]

        first = lease()["expires"]
        deadline = time.monotonic() + 60
        while lease()["expires"] == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.02)
        generation = held.generation
    assert tracking.lock_generations(held.prefix)[generation].get("released") == "true"


# --- live shadow evidence (gate.shadow) -------------------------------------------------------------

SHADOW_RULE = ShadowRule(required=True, min_rows=500, min_labelled_rows=200, min_agreement=0.9)


def shadow_evidence(version: int, against: int, **changes) -> None:
    """The evidence `mlgate monitor` tags on ``version`` after it shadowed ``against`` in production."""
    evidence = dataclasses.replace(
        SHADOW_EVIDENCE,
        shadow_version=version,
        served_version=against,
        interval=(0.001, 0.02),
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    tracking.set_version_tags(MODEL, version, {EVIDENCE_TAG: dataclasses.replace(evidence, **changes).to_tag()})


def test_a_required_shadow_rule_does_not_block_the_first_promotion(registry):
    candidate(1)
    move = promotion.promote(MODEL, 1, "production", "first", ledger=registry, shadow_rule=SHADOW_RULE)

    assert holders()["production"] == 1 and "shadow" not in move


@pytest.mark.parametrize(
    "evidence, message",
    [
        (None, "no live shadow evidence"),
        ({"against": 3}, "compares v2 with v3, but production now holds v1"),
        ({"against": 1, "paired_rows": 40}, "40 paired shadow rows < 500 required"),
        ({"against": 1, "interval": (-0.03, 0.01)}, "the CI starts below"),
    ],
)
def test_a_required_shadow_rule_refuses_missing_or_insufficient_evidence(registry, evidence, message):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    if evidence is not None:
        shadow_evidence(2, **evidence)

    with pytest.raises(StageError, match=message):
        promotion.promote(MODEL, 2, "production", "x", ledger=registry, shadow_rule=SHADOW_RULE)
    assert holders() == {"production": 1, "previous": None}
    assert promotion.history(MODEL, registry)[1] == []


def test_a_malformed_evidence_tag_is_a_refusal_naming_it(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)
    tracking.set_version_tags(MODEL, 2, {EVIDENCE_TAG: "{not json"})

    with pytest.raises(StageError, match=f"v2: the tag {EVIDENCE_TAG} is not shadow evidence"):
        promotion.promote(MODEL, 2, "production", "x", ledger=registry, shadow_rule=SHADOW_RULE)
    assert holders()["production"] == 1


def test_good_shadow_evidence_promotes_and_is_recorded_in_a_ledger_that_verifies(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)  # a record without shadow evidence
    candidate(2)
    shadow_evidence(2, against=1)

    move = promotion.promote(MODEL, 2, "production", "shadow ok", ledger=registry, shadow_rule=SHADOW_RULE)

    assert holders() == {"production": 2, "previous": 1}
    assert move["shadow"] | {"measured_at": None} == {
        "served_version": 1,
        "paired_rows": 1000,
        "agreement": 0.95,
        "labelled_rows": 400,
        "metric": "roc_auc",
        "change": 0.01,
        "interval": [0.001, 0.02],
        "measured_at": None,
    }
    moves, problems = promotion.history(MODEL, registry)
    assert problems == [] and "shadow" not in moves[0] and moves[1]["shadow"] == move["shadow"]


def test_a_rule_not_required_ignores_shadow_evidence(registry):
    candidate(1)
    promotion.promote(MODEL, 1, "production", "first", ledger=registry)
    candidate(2)

    move = promotion.promote(MODEL, 2, "production", "x", ledger=registry, shadow_rule=ShadowRule())

    assert holders()["production"] == 2 and "shadow" not in move
