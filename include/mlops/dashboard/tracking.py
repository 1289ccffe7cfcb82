"""What the dashboard reads from MLflow, in as few calls as the pages need.

Overview, per project and side by side: its registered versions (one `search_model_versions`; since
registration tags each version with its evaluation's figures and gate, `registry.evaluation_tags`, they
carry what the page shows), the runs of the versions registered before that (one `search_runs` with
`run_id IN (...)`: their eval_* figures and quality; none when every version is tagged) and its latest
monitoring run (one `search_runs`, newest first, one result). A project page reads its
versions and its experiment's whole history once (`report_data.all_runs`) and takes everything from
them. Never a call per version or run. Per project, not one search for every project: on MLflow 3.17's
server one unfiltered `search_model_versions` of 180 versions took 0.20 s against 0.026 s for one
model's 20, and one `run_id IN` of 180 runs in 9 experiments 0.63 s against 0.017 s for 20 in one
(bench/dashboard.py's store, REST, median of 7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops.analytics import names
from mlops.analytics.compare import run_quality
from mlops.tracking.registry import EVAL_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run
    from mlflow.entities.model_registry import ModelVersion

EVAL = "eval_"
RUNS_PER_SEARCH = 1000
MONITORING = "monitoring"
FOOTPRINT_TAG = "memory_footprint_bytes"  # mlops.tracking.registry.version_tags
QUANTIZATION_TAG = "quantization"
TECHNIQUES_TAG = "techniques"


@dataclass
class ProjectTracking:
    """One project's MLflow side: its experiment, versions (oldest first) and the runs read with them."""

    experiment: Experiment | None
    versions: list[ModelVersion] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)  # run id -> run (at least the versions' runs)
    monitoring: list[Run] = field(default_factory=list)  # oldest first (overview: the latest alone)
    history: list[Run] | None = None  # every run of the experiment, oldest first (project page only)


def project_experiments(experiments: list[Experiment], known: set[str]) -> dict[str, Experiment]:
    """Project name -> its experiment: named after a project YAML, or tagged as a project's
    (the rule of `report_data.project_experiments`, keeping the experiment for its tags)."""
    return {e.name: e for e in experiments if e.name in known or e.tags.get(names.PROJECT) == e.name}


def model_versions(client: MlflowClient, project: str) -> list[ModelVersion]:
    return sorted(client.search_model_versions(f"name = '{_quoted(project)}'"), key=lambda v: int(v.version))


def runs_by_id(client: MlflowClient, experiment_ids: list[str], run_ids: list[str]) -> dict[str, Run]:
    """The runs of `run_ids` (in those experiments) by id: one search with MLflow's `IN` filter per
    RUNS_PER_SEARCH ids (a project's version runs fit in one)."""
    wanted = sorted({r for r in run_ids if r})
    found: dict[str, Run] = {}
    if not experiment_ids:
        return found
    for first in range(0, len(wanted), RUNS_PER_SEARCH):
        chunk = wanted[first:first + RUNS_PER_SEARCH]
        listed = ", ".join(f"'{_quoted(r)}'" for r in chunk)
        for run in client.search_runs(experiment_ids, filter_string=f"attributes.run_id IN ({listed})",
                                      max_results=len(chunk)):
            found[run.info.run_id] = run
    return found


def latest_monitoring(client: MlflowClient, experiment_id: str) -> list[Run]:
    """The newest monitoring run (a list of at most one)."""
    return list(client.search_runs([experiment_id], filter_string=f"tags.`{names.KIND}` = '{MONITORING}'",
                                    order_by=["attributes.start_time DESC"], max_results=1))


def versions_with_runs(client: MlflowClient, project: str, experiment: Experiment | None
                       ) -> tuple[list[ModelVersion], dict[str, Run]]:
    """The overview's read of a project's versions: the versions, then in one search the runs of those
    that do not carry their evaluation (registered before `registry.evaluation_tags`)."""
    versions = model_versions(client, project)
    untagged = [v.run_id for v in versions if not tagged_quality(v)]
    return versions, runs_by_id(client, [experiment.experiment_id] if experiment else [], untagged)


def tagged_quality(version: ModelVersion) -> tuple[str, str, float | None] | None:
    """(metric, goal, value) from the version's own tags (`registry.evaluation_tags`), None without them."""
    tags = version.tags or {}
    metric, goal = tags.get(names.QUALITY_METRIC), tags.get(names.QUALITY_GOAL)
    if not metric or goal not in ("max", "min"):
        return None
    return metric, goal, _number(tags.get(f"{EVAL_TAG}{metric}"))


def experiment_history(client: MlflowClient, experiment: Experiment | None) -> list[Run]:
    """Every run of the project's experiment, oldest first (one paged search: `report_data.all_runs`)."""
    from mlops.analytics.report_data import all_runs

    return all_runs(client, experiment.experiment_id) if experiment is not None else []


def page_state(experiment: Experiment | None, versions: list[ModelVersion], history: list[Run]) -> ProjectTracking:
    """A project page's MLflow side, every part taken from the versions and the whole history."""
    monitoring = [r for r in history if r.data.tags.get(names.KIND) == MONITORING]
    return ProjectTracking(experiment, versions, {r.info.run_id: r for r in history}, monitoring, history)


def quality_metric(tracking: ProjectTracking, configured: str | None) -> tuple[str | None, str | None]:
    """(metric, goal) that ranks the project's versions: what its runs were gated on (their tags), else
    the YAML's `evaluation.metric` with no known goal."""
    for run in list(tracking.runs.values()) + (tracking.history or []):
        quality = run_quality(run)
        if quality is not None:
            return quality[0], quality[1]
        metric, goal = run.data.tags.get(names.QUALITY_METRIC), run.data.tags.get(names.QUALITY_GOAL)
        if metric and goal in ("max", "min"):
            return metric, goal
    for version in reversed(tracking.versions):  # the newest gate: a changed `evaluation.metric` wins
        quality = tagged_quality(version)
        if quality is not None:
            return quality[0], quality[1]
    return configured, None


def version_dict(version: ModelVersion, run: Run | None, url: str) -> dict[str, Any]:
    """A registered version as the pages show it: its run's eval_* figures (named as the family's evaluate
    returns them), quality, footprint and quantization (version tags from registration)."""
    tags = version.tags or {}
    metrics = run.data.metrics if run else {}
    quality = run_quality(run) if run else None
    tagged = tagged_quality(version)
    if tagged is not None:  # registered with its evaluation: the run is not needed
        metrics = {**metrics, **{EVAL + k.removeprefix(EVAL_TAG): v for k, v in tags.items()
                                 if k.startswith(EVAL_TAG) and _number(v) is not None}}
        quality = tagged if tagged[2] is not None else quality
    footprint = tags.get(FOOTPRINT_TAG)
    if footprint is not None and _number(footprint) is not None:
        footprint_mb = _number(footprint) / 1e6
    else:
        footprint_mb = metrics.get(names.MODEL_FOOTPRINT_MB)
    technique = (run.data.tags.get(names.TECHNIQUES) if run else None) or tags.get(TECHNIQUES_TAG) or "unknown"
    return {
        "version": int(version.version),
        "created": moment(version.creation_timestamp),
        "technique": technique,
        "metrics": {k.removeprefix(EVAL): float(v) for k, v in sorted(metrics.items()) if k.startswith(EVAL)},
        "quality": quality[2] if quality else None,
        "footprint_mb": float(footprint_mb) if footprint_mb is not None else None,
        "quantization": tags.get(QUANTIZATION_TAG),
        "run_id": version.run_id or None,
        "url": url,
    }


def best_of(versions: list[dict[str, Any]], goal: str | None) -> dict[str, Any] | None:
    """The version with the best quality under `goal` (a tie: the newer); None when none has a quality."""
    scored = [v for v in versions if v["quality"] is not None]
    if not scored:
        return None
    pick = min if goal == "min" else max
    newer = -1 if goal == "min" else 1
    return pick(scored, key=lambda v: (v["quality"], newer * v["version"]))


def best_technique(experiment: Experiment | None, here: str | None, latest_run: Run | None) -> dict[str, Any] | None:
    """`mlops compare`'s verdict from the experiment's tag: the technique on this machine (else on the machine
    the latest version trained on, else the first judged), and every machine's."""
    if experiment is None or names.BEST_TECHNIQUE not in experiment.tags:
        return None
    try:
        verdict = json.loads(experiment.tags[names.BEST_TECHNIQUE])
        best = {str(k): str(v) for k, v in (verdict.get("best") or {}).items()}
    except (ValueError, AttributeError):
        return None
    if not best:
        return None
    trained_on = latest_run.data.tags.get(names.MACHINE) if latest_run else None
    machine = next((m for m in (here, trained_on) if m in best), sorted(best)[0])
    return {"technique": best[machine], "machine": machine, "all": best, "objective": verdict.get("objective")}


def moment(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat() if ms else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")
