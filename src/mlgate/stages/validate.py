"""validate: check data/raw/ against the data contract (conf/data/<name>.yaml `contract`).

Reads paths.raw; writes paths.validation (every violation at once). Exits non-zero on a violation.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlgate import console, files, project
from mlgate.data import DataSpec, ValidationResult, check_contract
from mlgate.project import StageError

STAGE = "validate"


def validate(frame: pd.DataFrame, spec: DataSpec) -> ValidationResult:
    return check_contract(frame, spec)


def report(result: ValidationResult, spec: DataSpec, source: str, rows: int) -> dict[str, Any]:
    return {
        "dataset": spec.name,
        "source": source,
        "rows": rows,
        "passed": result.passed,
        "violations": [v.as_dict() for v in result.violations],
        "warnings": [w.as_dict() for w in result.warnings],
    }


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    meta = files.read_json(paths.raw_meta)
    frame = pd.read_parquet(paths.raw_data)
    result = validate(frame, spec)
    source = meta["data"]["source"]
    summary = report(result, spec, source, len(frame))
    if paths.raw_current.exists():
        current = pd.read_parquet(paths.raw_current)
        current_spec_result = check_contract(current, spec)
        summary["current"] = report(current_spec_result, spec, meta["current"]["source"], len(current))
        summary["passed"] = summary["passed"] and current_spec_result.passed
    files.write_json(paths.validation, summary)
    for warning in result.warnings:
        console.say(STAGE, f"warning: {source}: column '{warning.column}': {warning.message}")
    if not summary["passed"]:
        lines = [f"{source}: column '{v['column']}', rule '{v['rule']}': {v['message']}" if v["column"]
                 else f"{source}: rule '{v['rule']}': {v['message']}" for v in summary["violations"]]
        for v in summary.get("current", {}).get("violations", []):
            lines.append(f"{summary['current']['source']}: column '{v['column']}', rule '{v['rule']}': {v['message']}")
        raise StageError(f"{len(lines)} contract violation(s) in dataset '{spec.name}' (details in {paths.validation}):\n  "
                         + "\n  ".join(lines))
    console.say(STAGE, f"passed: {len(spec.contract.columns)} columns, {console.number(len(frame))} rows, "
                       f"0 violations, {len(result.warnings)} warning(s) → {paths.validation}")
    return summary
