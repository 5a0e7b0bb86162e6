"""promote, rollback, history: move a registry alias (by default `production`) safely and on the record.

Every move runs under a registry lock, checks that the alias still points where the caller saw it
(compare-and-set), keeps the old holder under `previous`, and is recorded three ways: tags on the
version, a hash-chained append-only ledger (paths.ledger, committed) and the ledger's head hash on
the registered model, so an edited or truncated ledger is detected; it is verified before every
move, so a move cannot bury the damage. With MLGATE_LEDGER_KEY set, records carry an HMAC, so an
edit cannot simply be re-hashed by someone without the key.

The lock: generation n is a registered model `<model>.promotion-lock.<n>`, and only one process can
create each (the store's unique key). Its creator holds it until it tags it released; a newer
generation may be created over a released one, or over one whose lease (renewed while held) expired
or whose process died on this machine. A holder renews its lease and then checks that no newer
generation exists before each registry write; a taker creates its generation and then checks that
the older holder is released or stale. One of each pair of checks sees the other's write, so two
live holders never both write, as long as no holder stalls for longer than the lease between its
check and its write (no MLflow store can check a fencing token on the alias write itself).

Crash safety: the alias update is the commit point. Before it, a `mlgate.move.pending` tag on the
registered model records the intent; after it, the tags, ledger line and head follow. Whichever
mlgate command next takes the lock finishes a move whose alias had moved, or undoes one whose alias
had not, so the registry is never left half-way.

Shadow evidence (params.yaml `gate.shadow`, gating.shadow): with ``required``, `production` moves only
to a version whose live shadow evidence (the tag `mlgate monitor` writes on it) was measured against
the version holding `production` at that moment and meets the rule; the move's record carries a
summary of it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate import config, console
from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.gating import shadow as shadowing
from mlgate.gating.policy import GatePolicy
from mlgate.gating.shadow import ShadowRule
from mlgate.registry import CANDIDATE_ALIAS, CHAMPION_ALIAS

STAGE = "promote"
PREVIOUS_ALIAS = "previous"
PENDING_TAG = "mlgate.move.pending"
HEAD_TAG = "mlgate.ledger.head"
LOCK_TTL_S = 120.0
LOCK_WAIT_S = 30.0
LOCK_POLL_S = 0.2
LEDGER_KEY_ENV = "MLGATE_LEDGER_KEY"
LEDGER_ADOPT_ENV = "MLGATE_LEDGER_ADOPT_KEY"
KEYED = "hmac-sha256"


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


def _ledger_key() -> bytes | None:
    key = os.environ.get(LEDGER_KEY_ENV)
    return key.encode() if key else None


def _record_hash(record: dict[str, Any], key: bytes | None) -> str | None:
    """The record's hash: an HMAC with ``key`` for a keyed record (None without the key), else sha256."""
    body = json.dumps({k: v for k, v in record.items() if k != "hash"}, sort_keys=True).encode()
    if record.get("mac") == KEYED:
        return None if key is None else hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    return _parse_ledger(path.read_text(), path) if path.exists() else []


def _parse_ledger(text: str, path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                raise StageError(
                    f"{path}: line {number} is not valid JSON; the ledger was edited or cut mid-line. "
                    f"{_REPAIR.format(path=path)}"
                ) from None
            if not isinstance(record, dict):
                raise StageError(
                    f"{path}: line {number} is not a ledger record (a JSON object); the ledger was edited. "
                    f"{_REPAIR.format(path=path)}"
                )
            records.append(record)
    return records


_REPAIR = (
    "Restore the committed ledger (`git log -p -- {path}`, then `git checkout <commit> -- {path}`) "
    "until `mlgate history` passes."
)


def verify_ledger(records: list[dict[str, Any]], model: str, head: str | None, path: str | Path) -> list[str]:
    """Problems with the ledger: a record changed, removed or reordered, or ``model``'s last moves
    cut off (its last record is not the one the registry's head tag names)."""
    key = _ledger_key()
    problems = []
    previous = ""
    keyed_seen = False
    for number, record in enumerate(records, start=1):
        keyed = record.get("mac") == KEYED
        if record.get("prev") != previous:
            problems.append(f"{path}: record {number} does not follow record {number - 1} (removed or reordered)")
        if keyed and key is None:
            problems.append(f"{path}: record {number} is keyed ({KEYED}); set {LEDGER_KEY_ENV} to verify it")
        elif record.get("hash") != _record_hash(record, key):
            why = f" or {LEDGER_KEY_ENV} is not the key it was written with" if keyed else ""
            problems.append(f"{path}: record {number} was edited (its hash does not match its content{why})")
        if keyed_seen and not keyed:
            problems.append(
                f"{path}: record {number} is not keyed but follows keyed records (written without "
                f"{LEDGER_KEY_ENV}, or forged)"
            )
        keyed_seen = keyed_seen or keyed
        previous = record.get("hash", "")
    if key is not None and records and not keyed_seen and os.environ.get(LEDGER_ADOPT_ENV) != "1":
        # the first keyed record's MAC covers every record before it; until one exists, an attacker
        # without the key could rewrite the whole unkeyed file, so adopting the key is a deliberate act
        problems.append(
            f"{path}: no record is keyed although {LEDGER_KEY_ENV} is set (written before the key was "
            f"adopted, or rewritten without it); once the ledger checks out, set {LEDGER_ADOPT_ENV}=1 "
            f"for the one move that starts keying it"
        )
    last = next((r.get("hash") for r in reversed(records) if r.get("model") == model), None)
    if head is not None and last != head:
        problems.append(
            f"{path}: {model}'s last record is not the registry's last recorded move "
            f"({HEAD_TAG}={head[:12]}); the ledger was truncated or is not this registry's"
        )
    return problems


def _require_intact(path: str | Path, model: str, alias: str, pending_id: str | None, doing: str = "") -> None:
    """Refuse to move ``alias`` (or do ``doing``) over a damaged ledger: appending would hide the damage from `history`.

    A record of the interrupted move ``pending_id`` may already follow the registry's head (a crash
    between the ledger line and the head tag); ``recover`` finishes that move.
    """
    records = read_ledger(path)
    head = tracking.model_tags(model).get(HEAD_TAG)
    if pending_id is not None and records and records[-1].get("id") == pending_id:
        problems = verify_ledger(records[:-1], model, head, path)
        problems += [p for p in verify_ledger(records, model, None, path) if p not in problems]
    else:
        problems = verify_ledger(records, model, head, path)
    if problems:
        raise StageError(
            f"refusing to {doing or f'move {alias!r}'}: {'; '.join(problems)}. {_REPAIR.format(path=path)} "
            f"Appending to a damaged ledger would hide what was removed or changed."
        )


def _append(path: str | Path, move: dict[str, Any]) -> str:
    """Append ``move`` (idempotent on its id) and return the ledger's new head hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        # models have their own registry locks but may share one ledger file: appends on this
        # machine take turns, so two records never claim the same predecessor
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        records = _parse_ledger(handle.read(), path)
        if records and records[-1].get("id") == move["id"]:
            return records[-1]["hash"]
        key = _ledger_key()
        record = {**move, "prev": records[-1]["hash"] if records else ""}
        if key is not None:
            record["mac"] = KEYED
        record["hash"] = _record_hash(record, key)
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record["hash"]


# --- moving an alias --------------------------------------------------------------------------


class _Lock:
    """The registry lock for one model's aliases (see the module docstring for why it is safe).

    ``fence()`` before each write that must not race; the lease is renewed in the background while
    held, so a slow but live holder is never taken over.
    """

    def __init__(self, model: str):
        self.prefix = f"{model}.promotion-lock."
        self.owner = f"{who()}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.generation: int | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewal_failed = False

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.generation}"

    def __enter__(self) -> _Lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            generations = tracking.lock_generations(self.prefix)
            latest = max(generations, default=0)
            if self.generation is not None and latest > self.generation:
                self._stand_down()  # claimed a number from a stale view: a newer generation exists
            if self.generation is None:
                blocker = _live_holder(generations.get(latest))
                if blocker is None:
                    if tracking.try_lock(f"{self.prefix}{latest + 1}", self._lease()):
                        self.generation = latest + 1
                        self._start_renewing()
                    continue  # claimed: check the older holder stood down; lost the claim: look again
            else:
                blocker = next(
                    (
                        owner
                        for number, tags in generations.items()
                        if number < self.generation and (owner := _live_holder(tags))
                    ),
                    None,
                )
                if blocker is None:
                    return self
            if time.monotonic() > deadline:
                self._stand_down()
                raise StageError(
                    f"another promotion ({blocker}) holds the registry lock '{self.prefix}*'; try "
                    f"again shortly (a holder that died on another machine is taken over once its "
                    f"{LOCK_TTL_S:g} s lease runs out)"
                )
            time.sleep(LOCK_POLL_S)

    def __exit__(self, *exc) -> None:
        self._stand_down()

    def fence(self) -> None:
        """Renew the lease, then make sure no newer generation took over: right before a registry write."""
        lost = StageError(
            f"lost the registry lock {self.name} (its lease of {LOCK_TTL_S:g} s ran out while this "
            f"process was stalled, and another promotion took over); nothing more was written. "
            f"Check `mlgate history`, then retry"
        )
        if self._renewal_failed or not tracking.set_lock_tag(self.name, "expires", str(time.time() + LOCK_TTL_S)):
            raise lost
        generations = tracking.lock_generations(self.prefix)
        if max(generations, default=0) != self.generation or generations[self.generation].get("owner") != self.owner:
            raise lost

    def _lease(self) -> dict[str, str]:
        return {"owner": self.owner, "expires": str(time.time() + LOCK_TTL_S)}

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._renewal_failed = False
        self._renewer = threading.Thread(target=self._renew, name="mlgate-lock-renewer", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(LOCK_TTL_S / 4):
            if not tracking.set_lock_tag(self.name, "expires", str(time.time() + LOCK_TTL_S)):
                self._renewal_failed = True
                return

    def _stand_down(self) -> None:
        """Release this generation (if any) and delete the older ones, which nobody needs any more."""
        if self.generation is None:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        tracking.set_lock_tag(self.name, "released", "true")
        for number in tracking.lock_generations(self.prefix):
            if number < self.generation:
                tracking.delete_lock(f"{self.prefix}{number}")
        self.generation = None


def _live_holder(tags: dict[str, str] | None) -> str | None:
    """The owner of a lock generation that still holds it: not released, lease not expired, not dead here."""
    if tags is None or tags.get("released") == "true":
        return None
    try:
        expired = float(tags.get("expires", "")) < time.time()
    except ValueError:
        expired = True  # a lease nobody can read protects nothing
    owner = tags.get("owner", "")
    return None if expired or _dead_here(owner) else owner or "unknown owner"


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


_MOVE_FIELDS = {"id": str, "action": str, "model": str, "alias": str, "to_version": int}
_OPTIONAL_VERSIONS = ("from_version", "previous_before")


def _pending(model: str) -> dict[str, Any] | None:
    """The interrupted move the pending tag records, checked field by field (the tag is writable by anyone)."""
    raw = tracking.model_tags(model).get(PENDING_TAG)
    if raw is None:
        return None
    try:
        move = json.loads(raw)
        if not isinstance(move, dict):
            raise ValueError("not a JSON object")
        for field, kind in _MOVE_FIELDS.items():
            if not isinstance(move.get(field), kind) or isinstance(move.get(field), bool):
                raise ValueError(f"'{field}' is {move.get(field)!r}")
        for field in _OPTIONAL_VERSIONS:
            if move.get(field) is not None and (not isinstance(move[field], int) or isinstance(move[field], bool)):
                raise ValueError(f"'{field}' is {move[field]!r}")
        if move["model"] != model:
            raise ValueError(f"it is a move of '{move['model']}'")
    except ValueError as error:
        raise StageError(
            f"registered model '{model}': the tag {PENDING_TAG} is not a move mlgate wrote ({error}), "
            f"so mlgate cannot tell whether a move was interrupted. Check the aliases in the MLflow UI "
            f"against `mlgate history`, fix them by hand if needed, delete the tag, then retry"
        ) from None
    return move


def recover(model: str, ledger: str | Path, lock: _Lock | None = None) -> str | None:
    """Finish or undo a move that a crash interrupted; call with the lock held. Returns what it did."""
    move = _pending(model)
    if move is None:
        return None
    if lock is not None:
        lock.fence()
    if _held(model, move["alias"]) == move["to_version"]:
        _record(model, move, ledger)
        return f"finished the interrupted {move['action']} of '{move['alias']}' to v{move['to_version']}"
    if move.get("previous_before") is None:
        if _held(model, PREVIOUS_ALIAS) is not None:
            tracking.delete_alias(model, PREVIOUS_ALIAS)
    else:
        tracking.set_alias(model, PREVIOUS_ALIAS, move["previous_before"])
    tracking.delete_model_tag(model, PENDING_TAG)
    still = _named(move.get("from_version"))
    return f"undid the interrupted {move['action']} of '{move['alias']}' (it still holds {still})"


def _record(model: str, move: dict[str, Any], ledger: str | Path) -> None:
    prefix = f"mlgate.{move['alias']}"
    tracking.set_version_tags(
        model,
        move["to_version"],
        {
            f"{prefix}.{k}": "none" if (value := move.get(k)) is None else value
            for k in ("action", "from_version", "by", "at", "reason", "commit")
        },
    )
    head = _append(ledger, {k: v for k, v in move.items() if k != "previous_before"})
    tracking.set_model_tag(model, HEAD_TAG, head)
    tracking.delete_model_tag(model, PENDING_TAG)


def _move(
    model: str,
    alias: str,
    action: str,
    reason: str,
    expected: int | None | str,
    ledger: str | Path,
    choose: Callable[[], tracking.ModelVersion],
    notes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one path every alias move takes (see the module docstring). ``choose`` picks and checks the
    target version under the lock, after any interrupted move is settled, so what it read cannot
    change before the move. ``notes``: fields ``choose`` fills in as it runs, recorded with the move
    (each record's hash covers whatever fields it holds, so older records stay valid)."""
    with _Lock(model) as lock:
        pending = _pending(model)
        _require_intact(ledger, model, alias, None if pending is None else pending["id"])
        recovered = recover(model, ledger, lock)
        if recovered:
            console.say(STAGE, recovered)
        current = _held(model, alias)
        if expected != "any" and current != expected:
            raise StageError(
                f"{model}: '{alias}' moved to {_named(current)} since you saw {_named(expected)}; "
                f"check `mlgate history`, then retry"
            )
        target = choose()
        to_version = target.version
        if current == to_version:
            raise StageError(f"{model} v{to_version} already holds '{alias}'")
        move = {
            "id": uuid.uuid4().hex,
            "action": action,
            "model": model,
            "alias": alias,
            "from_version": current,
            "to_version": to_version,
            "by": who(),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "reason": reason,
            "commit": tracking.git_commit(),
            "data_hash": target.tags.get("mlgate.data_hash"),
            "gate_hash": gate_hash(target.tags),
            "model_sha256": target.tags.get(tracking.DIGEST_TAG),
            **(notes or {}),
            "previous_before": _held(model, PREVIOUS_ALIAS),
        }
        lock.fence()
        tracking.set_model_tag(model, PENDING_TAG, json.dumps(move))
        if current is not None:
            tracking.set_alias(model, PREVIOUS_ALIAS, current)
        lock.fence()
        tracking.set_alias(model, alias, to_version)  # the commit point
        _record(model, move, ledger)
    return {k: v for k, v in move.items() if k != "previous_before"}


def record_erasure(model: str, ledger: str | Path, request: dict[str, Any]) -> dict[str, Any]:
    """Append an erasure request (``mlgate forget``) to the ledger, under the registry lock like a
    move, so the chain and the registry's head tag stay in step; the record as written."""
    with _Lock(model) as lock:
        pending = _pending(model)
        _require_intact(ledger, model, "", None if pending is None else pending["id"], "record the erasure")
        recovered = recover(model, ledger, lock)
        if recovered:
            console.say(STAGE, recovered)
        record = {
            "id": uuid.uuid4().hex,
            "action": "erasure",
            "model": model,
            "by": who(),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": tracking.git_commit(),
            **request,
        }
        lock.fence()
        tracking.set_model_tag(model, HEAD_TAG, _append(ledger, record))
    return record


def _named(version: int | None | str) -> str:
    return "no version" if version is None else f"v{version}"


def _version_or_error(model: str, version: int):
    try:
        return tracking.get_version(model, version)
    except Exception as error:  # noqa: BLE001 - the registry says "not found" in several ways
        raise StageError(f"registered model '{model}' has no version {version} ({error})") from None


def _require_digest(target, action: str, reviewed: str | None = None) -> None:
    """Refuse to give an alias to a version that serving would refuse to load (no artifact digest), or
    whose digest is not the one the reviewed gate report named."""
    recorded = target.tags.get(tracking.DIGEST_TAG)
    if reviewed is not None and recorded != reviewed:
        raise StageError(
            f"{target.name} v{target.version}: its artifact digest ({tracking.DIGEST_TAG}={recorded}) is not "
            f"the one the reviewed gate report names ({reviewed}); its artifacts or tags changed after "
            f"review. Refusing to {action}; gate a fresh candidate"
        )
    if recorded is None and os.environ.get(tracking.ALLOW_UNVERIFIED_ENV) != "1":
        raise StageError(
            f"{target.name} v{target.version} has no artifact digest (tag {tracking.DIGEST_TAG}), so "
            f"`mlgate serve` would refuse to load it; refusing to {action}. Gate a fresh candidate, or set "
            f"{tracking.ALLOW_UNVERIFIED_ENV}=1 if you trust every writer of the registry and artifact store"
        )


def promote(
    model: str,
    version: int,
    alias: str,
    reason: str,
    *,
    expected: int | None | str = "any",
    ledger: str | Path = "registry/ledger.jsonl",
    reviewed_digest: str | None = None,
    shadow_rule: ShadowRule | None = None,
) -> dict[str, Any]:
    """Move ``alias`` to ``version``, which must have passed the gate and hold `staging`.

    ``expected``: the version the caller saw on ``alias`` (None: none); "any" skips the check.
    ``reviewed_digest``: the artifact digest the reviewed gate report names; refuse any other.
    ``shadow_rule`` (``shadow_rule(params)``), when ``required`` and ``alias`` is `production`: the
    version's live shadow evidence (tag gating.shadow.EVIDENCE_TAG) must have been measured against the
    version holding `production` now and meet the rule, or nothing moves; its summary goes into the
    move's record. With no version holding `production`, shadow evidence cannot exist (there was no
    traffic to shadow), so the rule does not block the first promotion.
    """
    notes: dict[str, Any] = {}

    def choose() -> tracking.ModelVersion:
        target = _version_or_error(model, version)
        if target.tags.get("mlgate.gate.passed") != "true":
            raise StageError(
                f"{model} v{version} did not pass the gate (tag mlgate.gate.passed="
                f"{target.tags.get('mlgate.gate.passed', 'missing')}); refusing to move '{alias}'"
            )
        if CANDIDATE_ALIAS not in target.aliases:
            raise StageError(
                f"{model} v{version} does not hold '{CANDIDATE_ALIAS}' (aliases: "
                f"{list(target.aliases) or 'none'}); only the gate's current candidate can be promoted"
            )
        _require_digest(target, f"move '{alias}'", reviewed_digest)
        if shadow_rule is not None and shadow_rule.required and alias == CHAMPION_ALIAS:
            notes.update(_shadow_checked(target, alias, shadow_rule))
        return target

    move = _move(model, alias, "promote", reason, expected, ledger, choose, notes)
    console.say(
        STAGE,
        f"{model}: '{alias}' {_named(move['from_version'])} → v{version} by {move['by']} ({reason}); "
        f"'{PREVIOUS_ALIAS}' keeps {_named(move['from_version'])}",
    )
    return move


def shadow_rule(params: dict[str, Any]) -> ShadowRule:
    """params.yaml's `gate.shadow`: what `mlgate promote` asks of live shadow evidence (a StageError
    naming the key when the `gate` section is malformed)."""
    try:
        return config.load(GatePolicy, "gate", params).shadow
    except config.ConfigError as error:
        raise StageError(str(error)) from error


def _shadow_checked(target: tracking.ModelVersion, alias: str, rule: ShadowRule) -> dict[str, Any]:
    """Refuse to move ``alias`` to ``target`` unless its shadow evidence meets ``rule`` against the
    version holding ``alias`` now; the evidence's summary for the move's record ({} without one)."""
    name = f"{target.name} v{target.version}"
    champion = _held(target.name, alias)
    raw = target.tags.get(shadowing.EVIDENCE_TAG)
    try:
        evidence = None if raw is None else shadowing.ShadowEvidence.from_tag(raw)
    except StageError as error:
        raise StageError(f"{name}: {error}; refusing to move '{alias}' (gate.shadow.required)") from None
    reasons = shadowing.judge(rule, evidence, champion, dt.datetime.now(dt.UTC), candidate_version=target.version)
    if reasons:
        raise StageError(
            f"{name}: refusing to move '{alias}' without sufficient live shadow evidence (gate.shadow.required): "
            + "; ".join(reasons)
        )
    if evidence is None:
        return {}
    kept = ("served_version", "paired_rows", "agreement", "labelled_rows", "metric", "change", "interval")
    summary = {key: getattr(evidence, key) for key in kept}
    summary["interval"] = None if evidence.interval is None else list(evidence.interval)
    return {"shadow": {**summary, "measured_at": evidence.generated_at}}


def seal(model: str, version: int, reason: str) -> str:
    """Record the artifact digest of ``version`` from the files the store holds now, for a version
    gated before mlgate recorded digests: the way to keep serving it after someone has checked that
    its files are the ones trained. Refused when a digest is already recorded (a mismatch is never
    re-sealed: gate a fresh candidate). Who sealed it, when and why stay on the version's tags."""
    if not reason.strip():
        raise StageError("seal needs a --reason: say who checked the version's files and how")
    target = _version_or_error(model, version)
    recorded = target.tags.get(tracking.DIGEST_TAG)
    if recorded is not None:
        raise StageError(
            f"{model} v{version} already has an artifact digest ({tracking.DIGEST_TAG}={recorded[:16]}); "
            f"sealing is only for versions gated before digests were recorded"
        )
    digest = tracking.model_digest(model, version)
    tracking.set_version_tags(
        model,
        version,
        {
            tracking.DIGEST_TAG: digest,
            "mlgate.seal.by": who(),
            "mlgate.seal.reason": reason,
            "mlgate.seal.at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    console.say(
        STAGE,
        f"{model} v{version}: sealed its artifacts as they are now (sha256 {digest[:16]}) by {who()} "
        f"({reason}); loads now verify them against this digest",
    )
    return digest


@dataclass(frozen=True)
class GateReport:
    """What a gate.json says is to be promoted, and over what."""

    version: int
    champion: int | None
    model_sha256: str | None


def from_gate_report(path: str | Path, model: str) -> GateReport:
    """The candidate version, the production version the gate compared it with and the candidate's
    artifact digest, from a gate.json: a merge promotes exactly what was reviewed, and only over the
    champion it was measured against."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{path}: cannot read the gate report ({error})") from None
    if not isinstance(report, dict) or not isinstance(report.get("candidate"), dict):
        raise StageError(f"{path}: not a gate report (no 'candidate' object); regenerate it with `dvc repro gate`")
    candidate = report["candidate"]
    if candidate.get("name") != model:
        raise StageError(f"{path}: the report is for '{candidate.get('name')}', not '{model}'")
    if report.get("passed") is not True:
        reasons = report.get("reasons")
        reasons = "; ".join(map(str, reasons)) if isinstance(reasons, list) else "no reasons given"
        raise StageError(f"{path}: the gate rejected v{candidate.get('version')} ({reasons}); nothing to promote")
    champion = report.get("champion")
    if champion is not None and not isinstance(champion, dict):
        raise StageError(f"{path}: 'champion' must be an object or null, got {champion!r}")
    digest = candidate.get("model_sha256")
    if digest is not None and not isinstance(digest, str):
        raise StageError(f"{path}: 'candidate.model_sha256' must be a string, got {digest!r}")
    return GateReport(
        version=_report_version(path, "candidate.version", candidate.get("version")),
        champion=None if champion is None else _report_version(path, "champion.version", champion.get("version")),
        model_sha256=digest,
    )


def _report_version(path: Path, field: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    raise StageError(
        f"{path}: '{field}' must be a registered version number, got {value!r}; "
        f"regenerate the report with `dvc repro gate`"
    )


def rollback(
    model: str,
    alias: str,
    reason: str,
    *,
    expected: int | None | str = "any",
    ledger: str | Path = "registry/ledger.jsonl",
) -> dict[str, Any]:
    """Give ``alias`` back to the version under `previous` (which then holds the one rolled back from)."""

    def choose() -> tracking.ModelVersion:
        back_to = _held(model, PREVIOUS_ALIAS)
        if back_to is None:
            raise StageError(f"{model}: no version holds '{PREVIOUS_ALIAS}'; nothing to roll back to")
        target = _version_or_error(model, back_to)
        if target.tags.get("mlgate.gate.passed") != "true":
            raise StageError(
                f"{model} v{back_to} (under '{PREVIOUS_ALIAS}') did not pass the gate; refusing to roll back"
            )
        _require_digest(target, "roll back")
        return target

    move = _move(model, alias, "rollback", reason, expected, ledger, choose)
    back_to = move["to_version"]
    console.say(
        STAGE, f"{model}: '{alias}' rolled back {_named(move['from_version'])} → v{back_to} by {move['by']} ({reason})"
    )
    return move


def history(model: str, ledger: str | Path = "registry/ledger.jsonl") -> tuple[list[dict[str, Any]], list[str]]:
    """(this model's moves, oldest first; problems found in the ledger)."""
    records = read_ledger(ledger)
    head = tracking.model_tags(model).get(HEAD_TAG)
    problems = verify_ledger(records, model, head, ledger)
    return [r for r in records if r.get("model") == model], problems
