"""promote, rollback, history: move a registry alias (by default `production`) safely and on the record.

Every move runs under a registry lock, checks that the alias still points where the caller saw it
(compare-and-set), keeps the old holder under `previous`, and is recorded three ways: tags on the
version, a hash-chained append-only ledger (paths.ledger, committed) and the ledger's head hash on
the registered model, so an edited or truncated ledger is detected.

Crash safety: the alias update is the commit point. Before it, a `mlgate.move.pending` tag on the
registered model records the intent; after it, the tags, ledger line and head follow. Whichever
mlgate command next takes the lock finishes a move whose alias had moved, or undoes one whose alias
had not, so the registry is never left half-way.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from mlgate import console, tracking
from mlgate.project import StageError
from mlgate.stages.gate import CANDIDATE_ALIAS

STAGE = "promote"
PREVIOUS_ALIAS = "previous"
PENDING_TAG = "mlgate.move.pending"
HEAD_TAG = "mlgate.ledger.head"
LOCK_TTL_S = 120.0
LOCK_WAIT_S = 30.0


def who() -> str:
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True).stdout.strip()
    except OSError:
        name = ""
    return os.environ.get("MLGATE_USER") or name or getpass.getuser()


def _held(model: str, alias: str) -> int | None:
    holder = tracking.version_by_alias(model, alias)
    return None if holder is None else holder.version


def gate_hash(tags: dict[str, str]) -> str:
    """A fingerprint of the gate's verdict on a version (its `mlgate.gate.*` tags)."""
    verdict = {k: v for k, v in sorted(tags.items()) if k.startswith("mlgate.gate.")}
    return hashlib.sha256(json.dumps(verdict, sort_keys=True).encode()).hexdigest()


# --- the ledger -------------------------------------------------------------------------------

def _record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise StageError(f"{path}: line {number} is not valid JSON; the ledger was edited") from None
    return records


def verify_ledger(records: list[dict[str, Any]], model: str, head: str | None, path: str | Path) -> list[str]:
    """Problems with the ledger: a record changed, removed or reordered, or ``model``'s last moves
    cut off (its last record is not the one the registry's head tag names)."""
    problems = []
    previous = ""
    for number, record in enumerate(records, start=1):
        if record.get("prev") != previous:
            problems.append(f"{path}: record {number} does not follow record {number - 1} (removed or reordered)")
        if record.get("hash") != _record_hash(record):
            problems.append(f"{path}: record {number} was edited (its hash does not match its content)")
        previous = record.get("hash", "")
    last = next((r.get("hash") for r in reversed(records) if r.get("model") == model), None)
    if head is not None and last != head:
        problems.append(f"{path}: {model}'s last record is not the registry's last recorded move "
                        f"({HEAD_TAG}={head[:12]}); the ledger was truncated or is not this registry's")
    return problems


def _append(path: str | Path, move: dict[str, Any]) -> str:
    """Append ``move`` (idempotent on its id) and return the ledger's new head hash."""
    path = Path(path)
    records = read_ledger(path)
    if any(r.get("id") == move["id"] for r in records):
        return next(r["hash"] for r in records if r.get("id") == move["id"])
    record = {**move, "prev": records[-1]["hash"] if records else ""}
    record["hash"] = _record_hash(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record["hash"]


# --- moving an alias --------------------------------------------------------------------------

class _Lock:
    """The registry lock for one model's aliases. A holder that died on this machine (its process is
    gone) is not waited for: its lock is broken at once, and ``recover`` repairs what it left."""

    def __init__(self, model: str):
        self.name = f"{model}.promotion-lock"
        self.owner = f"{who()}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> _Lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while not tracking.try_lock(self.name, self.owner, LOCK_TTL_S):
            holder = tracking.lock_owner(self.name)
            if holder is not None and _dead_here(holder):
                tracking.break_lock(self.name)
                continue
            if time.monotonic() > deadline:
                raise StageError(f"another promotion ({holder}) holds the registry lock '{self.name}'; try again shortly")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        tracking.release_lock(self.name, self.owner)


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (user@host:pid:nonce) is a process of this machine that no longer runs."""
    try:
        host, pid = owner.rsplit("@", 1)[1].split(":")[:2]
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, PermissionError):
        return False
    return False


def recover(model: str, ledger: str | Path) -> str | None:
    """Finish or undo a move that a crash interrupted; call with the lock held. Returns what it did."""
    tags = tracking.model_tags(model)
    if PENDING_TAG not in tags:
        return None
    move = json.loads(tags[PENDING_TAG])
    if _held(model, move["alias"]) == move["to_version"]:
        _record(model, move, ledger)
        return f"finished the interrupted {move['action']} of '{move['alias']}' to v{move['to_version']}"
    if move["previous_before"] is None:
        if _held(model, PREVIOUS_ALIAS) is not None:
            tracking.delete_alias(model, PREVIOUS_ALIAS)
    else:
        tracking.set_alias(model, PREVIOUS_ALIAS, move["previous_before"])
    tracking.delete_model_tag(model, PENDING_TAG)
    return f"undid the interrupted {move['action']} of '{move['alias']}' (it still holds v{move['from_version']})"


def _record(model: str, move: dict[str, Any], ledger: str | Path) -> None:
    prefix = f"mlgate.{move['alias']}"
    tracking.set_version_tags(model, move["to_version"], {
        f"{prefix}.{k}": ("none" if move[k] is None else move[k])
        for k in ("action", "from_version", "by", "at", "reason", "commit")})
    head = _append(ledger, {k: v for k, v in move.items() if k != "previous_before"})
    tracking.set_model_tag(model, HEAD_TAG, head)
    tracking.delete_model_tag(model, PENDING_TAG)


def _move(model: str, alias: str, to_version: int, action: str, reason: str, expected: int | None | str,
          ledger: str | Path) -> dict[str, Any]:
    """The one path every alias move takes (see the module docstring)."""
    with _Lock(model):
        recovered = recover(model, ledger)
        if recovered:
            console.say(STAGE, recovered)
        current = _held(model, alias)
        if expected != "any" and current != expected:
            raise StageError(f"{model}: '{alias}' moved to {_named(current)} since you saw {_named(expected)}; "
                             f"check `mlgate history`, then retry")
        if current == to_version:
            raise StageError(f"{model} v{to_version} already holds '{alias}'")
        target = tracking.get_version(model, to_version)
        move = {"id": uuid.uuid4().hex, "action": action, "model": model, "alias": alias,
                "from_version": current, "to_version": to_version, "by": who(),
                "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "reason": reason,
                "commit": tracking.git_commit(), "data_hash": target.tags.get("mlgate.data_hash"),
                "gate_hash": gate_hash(target.tags), "previous_before": _held(model, PREVIOUS_ALIAS)}
        tracking.set_model_tag(model, PENDING_TAG, json.dumps(move))
        if current is not None:
            tracking.set_alias(model, PREVIOUS_ALIAS, current)
        tracking.set_alias(model, alias, to_version)   # the commit point
        _record(model, move, ledger)
    return {k: v for k, v in move.items() if k != "previous_before"}


def _named(version: int | None | str) -> str:
    return "no version" if version is None else f"v{version}"


def _version_or_error(model: str, version: int):
    try:
        return tracking.get_version(model, version)
    except Exception as error:  # noqa: BLE001 - the registry says "not found" in several ways
        raise StageError(f"registered model '{model}' has no version {version} ({error})") from None


def promote(model: str, version: int, alias: str, reason: str, *, expected: int | None | str = "any",
            ledger: str | Path = "registry/ledger.jsonl") -> dict[str, Any]:
    """Move ``alias`` to ``version``, which must have passed the gate and hold `staging`.

    ``expected``: the version the caller saw on ``alias`` (None: none); "any" skips the check.
    """
    target = _version_or_error(model, version)
    if target.tags.get("mlgate.gate.passed") != "true":
        raise StageError(f"{model} v{version} did not pass the gate (tag mlgate.gate.passed="
                         f"{target.tags.get('mlgate.gate.passed', 'missing')}); refusing to move '{alias}'")
    if CANDIDATE_ALIAS not in target.aliases:
        raise StageError(f"{model} v{version} does not hold '{CANDIDATE_ALIAS}' (aliases: {list(target.aliases) or 'none'}); "
                         f"only the gate's current candidate can be promoted")
    move = _move(model, alias, version, "promote", reason, expected, ledger)
    console.say(STAGE, f"{model}: '{alias}' {_named(move['from_version'])} → v{version} by {move['by']} ({reason}); "
                       f"'{PREVIOUS_ALIAS}' keeps {_named(move['from_version'])}")
    return move


def from_gate_report(path: str | Path, model: str) -> tuple[int, int | None]:
    """(the candidate version, the production version the gate compared it with) from a gate.json,
    so a merge promotes exactly what was reviewed, and only over the champion it was measured against."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{path}: cannot read the gate report ({error})") from None
    candidate = report.get("candidate") or {}
    if candidate.get("name") != model:
        raise StageError(f"{path}: the report is for '{candidate.get('name')}', not '{model}'")
    if not report.get("passed"):
        raise StageError(f"{path}: the gate rejected v{candidate.get('version')} ({'; '.join(report.get('reasons', []))}); "
                         f"nothing to promote")
    champion = report.get("champion")
    return int(candidate["version"]), None if champion is None else int(champion["version"])


def rollback(model: str, alias: str, reason: str, *, expected: int | None | str = "any",
             ledger: str | Path = "registry/ledger.jsonl") -> dict[str, Any]:
    """Give ``alias`` back to the version under `previous` (which then holds the one rolled back from)."""
    back_to = _held(model, PREVIOUS_ALIAS)
    if back_to is None:
        raise StageError(f"{model}: no version holds '{PREVIOUS_ALIAS}'; nothing to roll back to")
    if _version_or_error(model, back_to).tags.get("mlgate.gate.passed") != "true":
        raise StageError(f"{model} v{back_to} (under '{PREVIOUS_ALIAS}') did not pass the gate; refusing to roll back")
    move = _move(model, alias, back_to, "rollback", reason, expected, ledger)
    console.say(STAGE, f"{model}: '{alias}' rolled back {_named(move['from_version'])} → v{back_to} by {move['by']} ({reason})")
    return move


def history(model: str, ledger: str | Path = "registry/ledger.jsonl") -> tuple[list[dict[str, Any]], list[str]]:
    """(this model's moves, oldest first; problems found in the ledger)."""
    records = read_ledger(ledger)
    head = tracking.model_tags(model).get(HEAD_TAG)
    problems = verify_ledger(records, model, head, ledger)
    return [r for r in records if r.get("model") == model], problems
