"""promote: move an alias (by default `production`) to a version that passed the gate."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import subprocess
from typing import Any

from mlgate import console, tracking
from mlgate.project import StageError
from mlgate.stages.gate import CANDIDATE_ALIAS

STAGE = "promote"


def who() -> str:
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True).stdout.strip()
    except OSError:
        name = ""
    return os.environ.get("MLGATE_USER") or name or getpass.getuser()


def promote(model: str, version: int, alias: str, reason: str) -> dict[str, Any]:
    try:
        target = tracking.get_version(model, version)
    except Exception as error:  # noqa: BLE001 - the registry says "not found" in several ways
        raise StageError(f"registered model '{model}' has no version {version} ({error})") from None
    if target.tags.get("mlgate.gate.passed") != "true":
        raise StageError(f"{model} v{version} did not pass the gate (tag mlgate.gate.passed="
                         f"{target.tags.get('mlgate.gate.passed', 'missing')}); refusing to move '{alias}'")
    if CANDIDATE_ALIAS not in target.aliases:
        raise StageError(f"{model} v{version} does not hold '{CANDIDATE_ALIAS}' (aliases: {list(target.aliases) or 'none'}); "
                         f"only the gate's current candidate can be promoted")
    previous = tracking.version_by_alias(model, alias)
    if previous is not None and previous.version == version:
        raise StageError(f"{model} v{version} already holds '{alias}'")
    record = {"by": who(), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "reason": reason, "from_version": "none" if previous is None else str(previous.version),
              "commit": tracking.git_commit()}
    tracking.set_version_tags(model, version, {f"mlgate.{alias}.{k}": v for k, v in record.items()})
    tracking.set_alias(model, alias, version)
    console.say(STAGE, f"{model}: '{alias}' {record['from_version']} → v{version} by {record['by']} ({reason})")
    return record
