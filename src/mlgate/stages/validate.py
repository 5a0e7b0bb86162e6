"""validate: check data/raw/ against the data contract (conf/data/<name>.yaml `contract`).

Reads paths.raw; writes paths.validation (every violation and warning at once) and
paths.data_summary (Evidently's per-column summary, to look at when a check fails; infinite values
left out of it). Exits non-zero on a violation.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlgate import console, files, project
from mlgate.errors import StageError
from mlgate.modelling.data import DataSpec, ValidationResult, check_contract, non_finite, parse_datetime

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


def summary_columns(frame: pd.DataFrame, spec: DataSpec) -> dict[str, list[str]]:
    """Contract columns present in ``frame``, typed for the summary; a declared-numeric column that
    holds text is summarised as categorical, so the page shows what it holds."""
    present = [c for c in spec.contract.columns if c in frame.columns]
    kinds: dict[str, list[str]] = {"numerical": [], "categorical": [], "datetime": [], "text": []}
    for column in present:
        declared = spec.contract.columns[column].type
        if declared in ("integer", "float") and pd.api.types.is_numeric_dtype(frame[column]):
            kinds["numerical"].append(column)
        elif declared == "datetime":
            kinds["datetime"].append(column)
        elif declared == "text":
            kinds["text"].append(column)
        else:
            kinds["categorical"].append(column)
    return kinds


def _summary_frame(frame: pd.DataFrame, spec: DataSpec, kinds: dict[str, list[str]]) -> pd.DataFrame:
    out = frame[[c for group in kinds.values() for c in group]].copy()
    for column in kinds["numerical"]:  # an infinity breaks the histograms; validation.json names them
        out[column] = out[column].where(~non_finite(out[column]))
    for column in kinds["categorical"]:
        values = out[column].astype(object)
        out[column] = values.where(values.isna(), values.astype(str))
    for column in kinds["datetime"]:
        out[column] = parse_datetime(out[column]).dt.tz_localize(None)
    return out


def _line(source: str, violation: dict[str, Any]) -> str:
    where = f"column '{violation['column']}', " if violation["column"] else ""
    return f"{source}: {where}rule '{violation['rule']}': {violation['message']}"


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
        current_spec_result = check_contract(current, spec, labelled=False)  # new traffic may not have labels yet
        summary["current"] = report(current_spec_result, spec, meta["current"]["source"], len(current))
        summary["passed"] = summary["passed"] and current_spec_result.passed
    from mlgate.adapters import evidently_drift  # Evidently takes 3 s to import

    kinds = summary_columns(frame, spec)
    files.write_text(paths.data_summary, evidently_drift.data_summary(_summary_frame(frame, spec, kinds), **kinds))
    files.write_json(paths.validation, summary)
    for warning in result.warnings:
        console.say(STAGE, f"warning: {source}: column '{warning.column}', rule '{warning.rule}': {warning.message}")
    if not summary["passed"]:
        lines = [_line(source, v) for v in summary["violations"]]
        lines += [_line(summary["current"]["source"], v) for v in summary.get("current", {}).get("violations", [])]
        raise StageError(
            f"{len(lines)} contract violation(s) in dataset '{spec.name}' (details in {paths.validation}, "
            f"column summaries in {paths.data_summary}):\n  " + "\n  ".join(lines)
        )
    console.say(
        STAGE,
        f"passed: {len(spec.contract.columns)} columns, {console.number(len(frame))} rows, "
        f"0 violations, {len(result.warnings)} warning(s) → {paths.validation}, {paths.data_summary}",
    )
    return summary
