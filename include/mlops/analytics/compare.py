"""`mlops compare`: which optimization technique works best for a project on each machine.

A project's finished training runs are grouped by machine (`machine.id`) and technique
(`mlops.techniques`); each group gets its quality (the metric that gates registration, the
evaluation's figure when there is one) and its mean `perf/...` figures. On each machine the
groups good enough on quality (pass `evaluation.threshold`, else within `compare.quality_tolerance`
of the best) compete on the project's `compare.objective`. The verdict is written where people
look: a tag on the project's experiment and on its latest registered model version.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.analytics import names

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mlops.config.schema import ProjectConfig

#: objective -> (perf metric it ranks by, "max" or "min"); best_quality ranks by quality itself.
OBJECTIVES: dict[str, tuple[str, str]] = {
    "fastest": (names.THROUGHPUT, "max"),
    "most_efficient": (names.THROUGHPUT_PER_GB, "max"),
    "least_memory": (names.PEAK_MEMORY_MB, "min"),
    "smallest": (names.MODEL_FOOTPRINT_MB, "min"),
    "least_energy": (names.ENERGY_PER_SAMPLE_J, "min"),
}
#: The figures shown per group (means over the group's runs).
FIGURES = (
    names.THROUGHPUT, names.STEP_TIME_MS, names.PEAK_MEMORY_MB, names.THROUGHPUT_PER_GB, names.MODEL_FOOTPRINT_MB,
    names.GPU_UTILIZATION_MEAN, names.CPU_UTILIZATION_MEAN, names.ENERGY_PER_SAMPLE_J, names.TRAIN_SECONDS,
)


@dataclass
class Group:
    """The runs of one technique on one machine."""

    technique: str
    runs: int
    quality: float
    figures: dict[str, float]
    good_enough: bool = False
    run_ids: list[str] = field(default_factory=list)


@dataclass
class MachineVerdict:
    machine: str
    groups: list[Group]
    best: str | None
    reason: str


@dataclass
class ProjectComparison:
    project: str
    metric: str | None
    goal: str | None
    objective: str
    machines: list[MachineVerdict]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best_by_machine(self) -> dict[str, str]:
        return {m.machine: m.best for m in self.machines if m.best is not None}


def training_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Finished training runs of an experiment (monitoring and other kinds left out), all pages."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=1000, page_token=token
        )
        runs.extend(r for r in page if names.KIND not in r.data.tags)
        token = page.token
        if not token:
            return runs


def run_quality(run: Run) -> tuple[str, str, float] | None:
    """(metric, goal, value) of a run: the evaluation's figure when it has one, else the training's."""
    tags, metrics = run.data.tags, run.data.metrics
    metric, goal = tags.get(names.QUALITY_METRIC), tags.get(names.QUALITY_GOAL)
    if not metric or goal not in ("max", "min"):
        return None
    value = metrics.get(f"eval_{metric}", metrics.get(metric))
    return None if value is None else (metric, goal, float(value))


def compare_runs(project: str, runs: list[Run], config: ProjectConfig | None) -> ProjectComparison:
    """Group, score and judge one project's runs (pure: no tracking calls)."""
    objective = config.compare.objective if config else "fastest"
    tolerance = config.compare.quality_tolerance if config else 0.02
    threshold = config.evaluation.threshold if config else None
    buckets: dict[tuple[str, str], list[tuple[Run, float]]] = defaultdict(list)
    metric = goal = None
    for run in runs:
        quality = run_quality(run)
        if quality is None:
            continue
        metric, goal, value = quality
        machine = run.data.tags.get(names.MACHINE, "unknown machine")
        buckets[(machine, run.data.tags.get(names.TECHNIQUES, "none"))].append((run, value))
    by_machine: dict[str, list[Group]] = defaultdict(list)
    for (machine, technique), members in sorted(buckets.items()):
        figures = {}
        for name in FIGURES:
            values = [r.data.metrics[name] for r, _ in members if name in r.data.metrics]
            if values:
                figures[name] = statistics.fmean(values)
        by_machine[machine].append(
            Group(technique, len(members), statistics.fmean(v for _, v in members), figures,
                  run_ids=[r.info.run_id for r, _ in members])
        )
    machines = [
        _judge(machine, groups, goal or "max", objective, tolerance, threshold) for machine, groups in by_machine.items()
    ]
    return ProjectComparison(project, metric, goal, objective, machines)


def _judge(
    machine: str, groups: list[Group], goal: str, objective: str, tolerance: float, threshold: float | None
) -> MachineVerdict:
    better = max if goal == "max" else min
    best_quality = better(g.quality for g in groups)
    for g in groups:
        if threshold is not None:
            g.good_enough = g.quality >= threshold if goal == "max" else g.quality <= threshold
        else:
            margin = tolerance * abs(best_quality)
            g.good_enough = g.quality >= best_quality - margin if goal == "max" else g.quality <= best_quality + margin
    fine = [g for g in groups if g.good_enough]
    if not fine:
        return MachineVerdict(machine, groups, None, f"no technique reaches the quality threshold {threshold}")
    rule = f"within the quality threshold {threshold}" if threshold is not None else \
        f"within {tolerance:.0%} of the best quality"
    if objective == "best_quality":
        best = better(fine, key=lambda g: g.quality)
        return MachineVerdict(machine, groups, best.technique, f"best quality ({best.quality:.4g})")
    metric, direction = OBJECTIVES[objective]
    ranked = [g for g in fine if metric in g.figures]
    if not ranked and objective == "least_energy":  # no power reading on this machine
        metric, direction = OBJECTIVES["fastest"]
        ranked = [g for g in fine if metric in g.figures]
        rule += "; no power reading on this machine, so fastest"
    if not ranked:
        return MachineVerdict(machine, groups, None, f"no run of the good-enough techniques has {metric}")
    pick = max if direction == "max" else min
    best = pick(ranked, key=lambda g: g.figures[metric])
    return MachineVerdict(
        machine, groups, best.technique, f"{objective}: {metric} {best.figures[metric]:.4g}, {rule}"
    )


def compare_projects(
    client: MlflowClient, configs: dict[str, ProjectConfig], only: str | None = None
) -> list[ProjectComparison]:
    """Every project with an experiment (or just `only`): its comparison."""
    results = []
    for experiment in client.search_experiments(max_results=1000):
        project = experiment.name
        if only is not None and project != only:
            continue
        if project not in configs and experiment.tags.get(names.PROJECT) != project:
            continue  # not a project's experiment (MLflow's Default, the toolkit's own)
        runs = training_runs(client, experiment.experiment_id)
        if runs:
            results.append(compare_runs(project, runs, configs.get(project)))
    return sorted(results, key=lambda c: c.project)


def write_verdicts(client: MlflowClient, comparison: ProjectComparison) -> None:
    """The verdict as tags: on the experiment (JSON per machine) and on the latest registered version
    (the best technique on the machine that version was trained on, and whether it is that one)."""
    experiment = client.get_experiment_by_name(comparison.project)
    if experiment is None:
        return
    verdict = {"objective": comparison.objective, "best": comparison.best_by_machine()}
    client.set_experiment_tag(experiment.experiment_id, names.BEST_TECHNIQUE, json.dumps(verdict, sort_keys=True))
    versions = client.search_model_versions(f"name = '{comparison.project}'")
    if not versions:
        return
    latest = max(versions, key=lambda v: int(v.version))
    if not latest.run_id:
        return
    tags = client.get_run(latest.run_id).data.tags
    machine = tags.get(names.MACHINE)
    best = comparison.best_by_machine().get(machine or "")
    if best is None:
        return
    client.set_model_version_tag(
        comparison.project, latest.version, names.BEST_TECHNIQUE_HERE, f"{best} on {machine} ({comparison.objective})"
    )
    client.set_model_version_tag(
        comparison.project, latest.version, names.IS_BEST_TECHNIQUE, str(tags.get(names.TECHNIQUES) == best).lower()
    )


def format_table(comparisons: list[ProjectComparison]) -> str:
    """The comparison as text: per project and machine, a row per technique, the verdict under it."""
    lines: list[str] = []
    for c in comparisons:
        lines.append(f"{c.project}  (quality: {c.metric}, {c.goal}; objective: {c.objective})")
        for m in c.machines:
            lines.append(f"  machine: {m.machine}")
            lines.append(f"    {'technique':<28} {'runs':>4} {'quality':>9} {'items/s':>10} {'step ms':>8} "
                         f"{'peak MB':>8} {'/s per GB':>9} {'model MB':>8}  ok")
            for g in m.groups:
                f = g.figures
                lines.append(
                    f"    {g.technique:<28} {g.runs:>4} {g.quality:>9.4g} {_num(f, names.THROUGHPUT):>10} "
                    f"{_num(f, names.STEP_TIME_MS):>8} {_num(f, names.PEAK_MEMORY_MB):>8} "
                    f"{_num(f, names.THROUGHPUT_PER_GB):>9} {_num(f, names.MODEL_FOOTPRINT_MB):>8}  "
                    f"{'yes' if g.good_enough else 'no'}"
                )
            lines.append(f"    best: {m.best or 'none'} ({m.reason})")
        lines.append("")
    return "\n".join(lines) if lines else "no training runs to compare"


def _num(figures: dict[str, float], name: str) -> str:
    return f"{figures[name]:.4g}" if name in figures else "-"
