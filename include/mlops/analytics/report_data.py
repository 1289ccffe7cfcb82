"""Everything the history report shows, read once into plain dataclasses (no plotting here).

Sources, each read in one pass: every project's MLflow experiment (one search for all its runs:
training, monitoring and failed ones), its registered versions, the served-prediction log when
there is one (`mlops.monitoring.prediction_log`), and Airflow's metadata DB for pool usage. A
source that cannot be read leaves its part empty with a `note` saying why; nothing is filled in.
Techniques are grouped and judged by `mlops.analytics.compare` (the same verdict `mlops compare`
gives), not here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops.analytics import names
from mlops.analytics.compare import ProjectComparison, compare_runs, run_quality
from mlops.monitoring.report import MODEL_VERSION_TAG
from mlops.resources.pool_usage import PoolUsage, usage_for_report

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings

#: Monitoring metrics (written by `mlops.monitoring.report.log_report`) and the fields they fill.
MONITORING_METRICS = {
    "drift_share": "drift_share", "serving_accuracy": "accuracy", "serving_p50_ms": "p50_ms",
    "serving_p99_ms": "p99_ms", "serving_requests": "requests",
    "serving_requests_per_busy_second": "requests_per_busy_second",
}
NOT_DIAGNOSED = "not diagnosed"


@dataclass
class TrainingRun:
    """One finished training run: when, how, how good, and its `perf/...` figures."""

    run_id: str
    start: datetime
    technique: str
    machine: str
    quality: float | None
    figures: dict[str, float]
    seconds: float | None  # perf/train_seconds, else the run's duration


@dataclass
class MonitoringPoint:
    """One monitor run: drift, accuracy and the serving window it saw."""

    start: datetime
    version: str | None
    drift_share: float | None = None
    accuracy: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: float | None = None
    requests_per_busy_second: float | None = None


@dataclass
class ServingVersion:
    version: str
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    requests_per_busy_second: float | None


@dataclass
class Serving:
    """Latency and throughput per served version, and where they come from."""

    source: str  # "" when there is nothing
    versions: list[ServingVersion] = field(default_factory=list)
    note: str | None = None


@dataclass
class RegisteredVersion:
    version: int
    created: datetime
    technique: str
    quality: float | None


@dataclass
class ProjectData:
    name: str
    metric: str | None
    goal: str | None
    training: list[TrainingRun]
    comparison: ProjectComparison | None
    monitoring: list[MonitoringPoint]
    serving: Serving
    failures: dict[str, int]  # diagnosed cause -> failed runs
    failed_seconds: float
    versions: list[RegisteredVersion]
    note: str | None = None  # why a configured project has nothing at all

    @property
    def compute_seconds(self) -> float:
        """Training time of the finished runs plus the time the failed ones ran."""
        return sum(r.seconds or 0.0 for r in self.training) + self.failed_seconds

    def best_version(self) -> RegisteredVersion | None:
        scored = [v for v in self.versions if v.quality is not None]
        if not scored:
            return None
        pick = min if self.goal == "min" else max
        return pick(scored, key=lambda v: (v.quality, v.version))


@dataclass
class ReportData:
    generated: datetime
    tracking_uri: str
    projects: list[ProjectData]
    pools: PoolUsage | None  # None: not asked for (a project's own report)


def collect(
    client: MlflowClient,
    configs: dict[str, ProjectConfig],
    settings: Settings,
    only: str | None = None,
    window_days: float = 30.0,
    pools: bool = True,
    now: datetime | None = None,
) -> ReportData:
    """Every project (configured or with an experiment), or just `only`; pool usage when `pools`.

    MLflow's history is read whole; the prediction log and pool usage over the last `window_days`
    (both grow with traffic, not with the number of runs)."""
    now = now or datetime.now(UTC)
    experiments = project_experiments(client, configs, only)
    wanted = sorted(set(experiments) | ({only} if only else set(configs)))
    since = now - timedelta(days=window_days)
    projects = [project_data(client, name, experiments.get(name), configs.get(name), settings, since)
                for name in wanted]
    usage = usage_for_report(settings, since) if pools else None
    return ReportData(now, settings.tracking_uri, projects, usage)


def project_experiments(client: MlflowClient, configs: dict[str, ProjectConfig], only: str | None) -> dict[str, str]:
    """Project name -> experiment id, by the rule `compare_projects` uses (a YAML or the project tag)."""
    found = {}
    for experiment in client.search_experiments(max_results=1000):
        name = experiment.name
        if (only is None or name == only) and (name in configs or experiment.tags.get(names.PROJECT) == name):
            found[name] = experiment.experiment_id
    return found


def all_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every run of an experiment, all statuses and pages, oldest first."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda r: r.info.start_time or 0)


def project_data(
    client: MlflowClient, name: str, experiment_id: str | None, config: ProjectConfig | None,
    settings: Settings, serving_since: datetime,
) -> ProjectData:
    runs = all_runs(client, experiment_id) if experiment_id is not None else []
    finished = [r for r in runs if r.info.status == "FINISHED" and names.KIND not in r.data.tags]
    monitoring = [monitoring_point(r) for r in runs if r.data.tags.get(names.KIND) == "monitoring"]
    failed = [r for r in runs if r.info.status == "FAILED" and r.data.tags.get(names.KIND) != "report"]
    training = [training_run(r) for r in finished]
    comparison = compare_runs(name, finished, config) if finished else None
    metric = comparison.metric if comparison else None
    goal = comparison.goal if comparison else None
    return ProjectData(
        name=name, metric=metric, goal=goal, training=training, comparison=comparison, monitoring=monitoring,
        serving=serving(settings, name, serving_since, monitoring),
        failures=dict(Counter(r.data.tags.get(names.FAILURE_CAUSE, NOT_DIAGNOSED) for r in failed).most_common()),
        failed_seconds=sum(_duration(r) or 0.0 for r in failed),
        versions=registered_versions(client, name, {r.run_id: r for r in training}),
        note=None if experiment_id else "no MLflow experiment yet (the project never trained)",
    )


def training_run(run: Run) -> TrainingRun:
    tags, metrics = run.data.tags, run.data.metrics
    quality = run_quality(run)
    seconds = metrics.get(names.TRAIN_SECONDS)
    return TrainingRun(
        run_id=run.info.run_id,
        start=_moment(run.info.start_time),
        technique=tags.get(names.TECHNIQUES, "none"),
        machine=tags.get(names.MACHINE, "unknown machine"),
        quality=quality[2] if quality else None,
        figures={k: v for k, v in metrics.items() if k.startswith(names.PERF)},
        seconds=float(seconds) if seconds is not None else _duration(run),
    )


def monitoring_point(run: Run) -> MonitoringPoint:
    point = MonitoringPoint(_moment(run.info.start_time), run.data.tags.get(MODEL_VERSION_TAG))
    for metric, attribute in MONITORING_METRICS.items():
        if metric in run.data.metrics:
            setattr(point, attribute, float(run.data.metrics[metric]))
    return point


def registered_versions(client: MlflowClient, project: str, runs: dict[str, TrainingRun]) -> list[RegisteredVersion]:
    """The project's model versions, oldest first, with the quality of the run each came from."""
    found = []
    for v in client.search_model_versions(f"name = '{project}'"):
        run = runs.get(v.run_id or "")
        technique = run.technique if run else (v.tags or {}).get("techniques", "unknown")
        found.append(RegisteredVersion(int(v.version), _moment(v.creation_timestamp), technique,
                                       run.quality if run else None))
    return sorted(found, key=lambda v: v.version)


def serving(settings: Settings, project: str, since: datetime, monitoring: list[MonitoringPoint]) -> Serving:
    """Per version: from the prediction log of the window when it has rows, else from the monitor's runs."""
    from_log = serving_from_log(settings, project, since)
    if from_log.versions:
        return from_log
    by_version: dict[str, list[MonitoringPoint]] = {}
    for point in monitoring:
        if point.p50_ms is not None or point.requests is not None:
            by_version.setdefault(point.version or "unknown", []).append(point)
    if not by_version:
        return Serving("", note=f"{from_log.note}, and no monitoring run logged serving figures")
    versions = [
        ServingVersion(
            version, int(sum(p.requests or 0 for p in points)), _mean(p.p50_ms for p in points),
            _mean(p.p99_ms for p in points), _mean(p.requests_per_busy_second for p in points),
        )
        for version, points in sorted(by_version.items(), key=lambda item: _version_key(item[0]))
    ]
    windows = sum(len(p) for p in by_version.values())
    return Serving(f"monitor runs: latency and rate the mean of {windows} windows, requests their sum", versions)


def serving_from_log(settings: Settings, project: str, since: datetime) -> Serving:
    """Requests, p50/p99 latency and requests per busy second of each version in the served-prediction log."""
    from mlops.monitoring.performance import WindowStats
    from mlops.monitoring.prediction_log import log_files, read_predictions

    if not log_files(settings, "predictions", project, since):
        return Serving("", note=f"no served predictions logged since {since:%Y-%m-%d}")
    window = read_predictions(settings, project, since=since, columns=["request_id", "ts", "version", "latency_ms"])
    if window.empty:
        return Serving("", note=f"no served predictions logged since {since:%Y-%m-%d}")
    versions = []
    for version, rows in window.groupby("version", sort=True):
        stats = WindowStats.of(rows)
        if stats is not None:
            versions.append(ServingVersion(str(int(version)), stats.requests, stats.p50_ms, stats.p99_ms,
                                           stats.requests_per_busy_second))
    return Serving(f"prediction log since {since:%Y-%m-%d}", versions)


def _moment(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC)


def _duration(run: Run) -> float | None:
    start, end = run.info.start_time, run.info.end_time
    return (end - start) / 1000 if start and end and end >= start else None


def _mean(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)
