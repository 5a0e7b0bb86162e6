"""gate: register the candidate, compare it with the `production` champion, and grant `staging` or not.

Reads the validation, drift, test-metric and train reports and the test split; writes paths.gate
(each check: observed, limit, verdict) and paths.promotion (Markdown for a pull request). Registry
changes are ordered so a failure leaves no half-applied state: version tags first, alias last.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from mlgate import config, console, files, metrics, project, tracking
from mlgate.data import target_vector
from mlgate.project import StageError
from mlgate.stages import evaluate
from mlgate.stages.ingest import content_hash

STAGE = "gate"
CANDIDATE_ALIAS = "staging"
CHAMPION_ALIAS = "production"


@dataclass(frozen=True)
class GatePolicy:
    metric: str
    require_validation: bool = True
    require_no_drift: bool = True
    metric_floor: float | None = None
    max_regression: float | None = None
    # Require the 95% paired-bootstrap interval of the gain over production to lie above zero.
    require_significant_gain: bool = False
    bootstrap_resamples: int = 1000


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: Any
    limit: Any
    detail: str


@dataclass(frozen=True)
class Decision:
    passed: bool
    checks: list[Check]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]


def decide(policy: GatePolicy, *, validation_passed: bool, drift: dict[str, Any], metric: str,
           candidate_score: float, champion_score: float | None, champion_error: str | None = None,
           gain_interval: tuple[float, float] | None = None) -> Decision:
    """Pure: every check of the policy against the evidence; passed only if all pass."""
    better = metrics.METRICS[metric].greater_is_better
    checks = []
    if policy.require_validation:
        checks.append(Check("validation", validation_passed, validation_passed, True,
                            "data contract passed" if validation_passed else "data contract violated (see reports/validation.json)"))
    if policy.require_no_drift:
        share, limit = drift["drift_share"], drift["max_drift_share"]
        top = ", ".join(drift["drifted_columns"][:5]) or "none"
        checks.append(Check("drift", share <= limit, round(share, 4), limit,
                            f"drift share {share:.2f} {'≤' if share <= limit else '>'} {limit:.2f} (drifted: {top})"))
    if policy.metric_floor is not None:
        ok = candidate_score >= policy.metric_floor if better else candidate_score <= policy.metric_floor
        relation = ("≥" if ok else "<") if better else ("≤" if ok else ">")
        checks.append(Check("metric_floor", ok, round(candidate_score, 6), policy.metric_floor,
                            f"test {metric} {candidate_score:.4f} {relation} floor {policy.metric_floor}"))
    if policy.max_regression is not None:
        if champion_error is not None:
            checks.append(Check("champion", False, None, policy.max_regression, champion_error))
        elif champion_score is None:
            checks.append(Check("champion", True, None, policy.max_regression, f"no '{CHAMPION_ALIAS}' model yet"))
        else:
            gain = metrics.improvement(metric, candidate_score, champion_score)
            ok = gain >= -policy.max_regression - 1e-12  # a loss of exactly the tolerance is allowed
            interval = "" if gain_interval is None else f", 95% CI [{gain_interval[0]:+.4f}, {gain_interval[1]:+.4f}]"
            checks.append(Check("champion", ok, round(gain, 6), -policy.max_regression,
                                f"test {metric} {candidate_score:.4f} vs production {champion_score:.4f} "
                                f"(gain {gain:+.4f}{interval}, allowed loss {policy.max_regression})"))
    if policy.require_significant_gain and champion_score is not None and champion_error is None:
        low = None if gain_interval is None else gain_interval[0]
        ok = low is not None and low > 0
        checks.append(Check("significant_gain", ok, None if low is None else round(low, 6), 0.0,
                            "no interval computed" if low is None else
                            f"95% CI of the {metric} gain over production starts at {low:+.4f} "
                            f"({'above' if ok else 'not above'} 0)"))
    return Decision(all(c.passed for c in checks), checks)


def promotion_markdown(result: dict[str, Any]) -> str:
    """The pull-request summary: verdict, metrics table, checks, drift, links."""
    cand, champ = result["candidate"], result.get("champion")
    verdict = "✅ **PASSED**: granted `staging`" if result["passed"] else "❌ **REJECTED**: not granted `staging`"
    lines = [f"# Model promotion: `{cand['name']}` version {cand['version']}", "",
             f"{verdict}. Generated {result['generated_at']} at commit `{result['git_commit'][:12]}`.", ""]
    if not result["passed"]:
        lines += ["Reasons:", *[f"- {r}" for r in result["reasons"]], ""]
    lines += ["## Test metrics", "",
              f"Same test set for both ({result['test_rows']:,} rows, sha256 `{result['test_hash'][:12]}`).", ""]
    if champ and champ.get("metrics"):
        interval = result.get("gain_interval")
        lines += [f"| metric | candidate v{cand['version']} | production v{champ['version']} | difference | 95% CI of the gain |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, value in cand["metrics"].items():
            other = champ["metrics"][name]
            ci = (f"[{interval['low']:+.4f}, {interval['high']:+.4f}]"
                  if interval and interval["metric"] == name else "")
            lines.append(f"| {name} | {value:.4f} | {other:.4f} | {value - other:+.4f} | {ci} |")
        if interval:
            lines += ["", f"The interval is a paired bootstrap over test rows of the {interval['metric']} gain "
                          f"(positive: the candidate is better)."]
    else:
        lines += [f"| metric | candidate v{cand['version']} |", "| --- | ---: |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in cand["metrics"].items()]
        lines += ["", "No production model to compare with." if not champ else f"Production: {champ.get('error')}"]
    lines += ["", "## Checks", "", "| check | verdict | observed | limit | detail |", "| --- | --- | --- | --- | --- |"]
    for check in result["checks"]:
        mark = "pass" if check["passed"] else "**FAIL**"
        lines.append(f"| {check['name']} | {mark} | {check['observed']} | {check['limit']} | {check['detail']} |")
    drift = result["drift"]
    lines += ["", "## Drift (current batch vs training data)", "",
              f"{drift['drifted_count']} of {drift['columns_checked']} columns drifted (share {drift['drift_share']:.2f}, "
              f"limit {drift['max_drift_share']:.2f}); {drift['current_rows']:,} current vs {drift['reference_rows']:,} reference rows. "
              f"Full report: `{result['paths']['drift_report']}`.", ""]
    top = sorted(drift["columns"].items(), key=lambda kv: kv[1]["score"] / max(kv[1]["threshold"], 1e-12), reverse=True)[:5]
    lines += ["| column | method | score | threshold | drifted |", "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {c} | {v['method']} | {v['score']:.4f} | {v['threshold']} | {'yes' if v['drifted'] else 'no'} |" for c, v in top]
    lines += ["", "## Links", "", f"- Candidate run: {cand['run_link']}", f"- Candidate version: {cand['version_link']}"]
    if champ:
        lines.append(f"- Production version: {champ['version_link']}")
    lines += [f"- Model family: `{cand['family']}`; tuning run: {cand['tune_run_link']}", "",
              f"Promote after review: `mlgate promote --alias production --version {cand['version']}`", ""]
    return "\n".join(lines)


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    names = project.tracking(params)
    policy = config.load(GatePolicy, "gate", params)
    if policy.metric != spec.metric:
        raise StageError(f"params.yaml: the gate policy is stated in '{policy.metric}' (gate.metric) but dataset "
                         f"'{spec.name}' is scored in '{spec.metric}' (data.metric); choose a policy for "
                         f"{spec.metric} (e.g. -S gate=<policy>) or set gate.metric and gate.metric_floor")
    info = files.read_json(paths.train_info)
    validation = files.read_json(paths.validation)
    drift = files.read_json(paths.drift)
    candidate_metrics = {k: v for k, v in files.read_json(paths.metrics).items() if k != "rows"}
    test = pd.read_parquet(paths.split_file("test"))

    candidate = tracking.register(names.registered_model, info["model_uri"], info["run_id"])
    champion = tracking.version_by_alias(names.registered_model, CHAMPION_ALIAS)
    champion_metrics, champion_error, gain_interval = None, None, None
    if champion is not None and champion.version != candidate.version:
        try:
            champion_output = evaluate.predictions(tracking.load(champion.uri), test, spec)
        except Exception as error:  # noqa: BLE001 - reported as a failed check, not a crash
            champion_error = f"could not score production v{champion.version} on this test set: {error}"
        else:
            y = target_vector(test, spec)
            champion_metrics = metrics.all_scores(spec.task, y, *champion_output)
            candidate_output = evaluate.predictions(tracking.load(paths.model), test, spec)
            scored = 1 if metrics.METRICS[spec.metric].uses_probability else 0
            gain_interval = metrics.paired_bootstrap(spec.metric, y, candidate_output[scored], champion_output[scored],
                                                     resamples=policy.bootstrap_resamples, seed=project.seed(params))
    elif champion is not None:
        champion_metrics = candidate_metrics

    decision = decide(policy, validation_passed=validation["passed"], drift=drift, metric=spec.metric,
                      candidate_score=candidate_metrics[spec.metric],
                      champion_score=None if champion_metrics is None else champion_metrics[spec.metric],
                      champion_error=champion_error, gain_interval=gain_interval)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    commit = tracking.git_commit()
    result = {
        "passed": decision.passed, "reasons": decision.reasons, "metric": spec.metric, "generated_at": now,
        "git_commit": commit, "policy": asdict(policy), "checks": [asdict(c) for c in decision.checks],
        "test_rows": len(test), "test_hash": content_hash(test), "drift": drift,
        "gain_interval": None if gain_interval is None else {"metric": spec.metric, "confidence": 0.95,
                                                              "low": gain_interval[0], "high": gain_interval[1]},
        "paths": {"drift_report": paths.drift_report, "gate": paths.gate, "promotion": paths.promotion},
        "candidate": {"name": candidate.name, "version": candidate.version, "run_id": info["run_id"],
                      "model_uri": info["model_uri"], "family": info["family"], "metrics": candidate_metrics,
                      "run_link": tracking.run_link(names.ui_url, info["run_id"]),
                      "version_link": tracking.version_link(names.ui_url, candidate.name, candidate.version),
                      "tune_run_link": tracking.run_link(names.ui_url, files.read_json(paths.best_params)["tune_run_id"])},
        "champion": None if champion is None else {
            "version": champion.version, "run_id": champion.run_id, "metrics": champion_metrics, "error": champion_error,
            "version_link": tracking.version_link(names.ui_url, champion.name, champion.version)},
    }
    files.write_json(paths.gate, result)
    files.write_text(paths.promotion, promotion_markdown(result))

    tags = {"mlgate.gate.passed": str(decision.passed).lower(), "mlgate.gate.at": now, "mlgate.gate.commit": commit,
            "mlgate.gate.metric": spec.metric, "mlgate.data_hash": info["data_hash"]}
    for check in decision.checks:
        tags[f"mlgate.gate.{check.name}"] = f"{'pass' if check.passed else 'fail'}: {check.detail}"
    tracking.set_version_tags(candidate.name, candidate.version, tags)
    tracking.log(info["run_id"], metrics={"gate/passed": float(decision.passed)},
                 tags={"mlgate.registered_version": str(candidate.version)})
    for path in (paths.gate, paths.promotion, paths.drift, paths.drift_report, paths.validation):
        tracking.log_artifact(info["run_id"], path, "gate")
    if decision.passed:
        tracking.set_alias(candidate.name, CANDIDATE_ALIAS, candidate.version)
    elif CANDIDATE_ALIAS in candidate.aliases:
        tracking.delete_alias(candidate.name, CANDIDATE_ALIAS)

    console.say(STAGE, f"{candidate.name} v{candidate.version} ({info['family']}): "
                       + ("PASSED → alias 'staging'" if decision.passed else "REJECTED, no alias"))
    for check in decision.checks:
        console.say("", f"  {'pass' if check.passed else 'FAIL'}  {check.name:<13} {check.detail}")
    console.say("", f"  reports: {paths.promotion} · {paths.gate} · {paths.drift_report}")
    return result
