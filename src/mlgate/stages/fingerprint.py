"""fingerprint: a cheap summary of the source that changes when its data does.

Always runs (dvc.yaml `always_changed`); writes paths.fingerprint (persisted between runs), which
`ingest` depends on, so a changed table, API or file reruns the graph and an unchanged one does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlgate import console, files, project
from mlgate.adapters import sources

STAGE = "fingerprint"


def run(params: dict[str, Any]) -> dict[str, Any]:
    source, current_path = project.source_spec(params)
    target = Path(project.paths(params).fingerprint)
    summary = sources.fingerprint(source)
    if current_path:
        summary["current"] = sources.fingerprint(sources.current_source(current_path))
    previous = files.read_json(target) if target.is_file() else None
    if previous != summary:
        files.write_json(target, summary)
    state = (
        "unchanged" if previous == summary else ("first fingerprint" if previous is None else "CHANGED: ingest reruns")
    )
    console.say(STAGE, f"{summary['location']}: {state}")
    return summary
