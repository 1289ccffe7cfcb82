"""The DAG factory: the only code that knows both the lifecycle plan and Airflow.

`collect_project_dags` turns every project YAML into its `<name>__lifecycle` DAG (and its
`<name>__deploy` / `<name>__monitor` DAGs when serving / monitoring is enabled) and
returns the errors of the files that could not be turned, so one broken YAML never
hides another project's DAG (the loaders in dags/ decide how errors are surfaced).
`build_toolkit_report_dag` makes the toolkit-wide `toolkit__report` DAG.
The files in dags/ import this module (Airflow puts plugins/ on sys.path in every process, the
DAG parsers and task runners too); the plugin itself does not. Operators are imported inside the
builders; they import Airflow's SDK only, never the ML stack.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from mlops.config import ProjectConfig

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
log = logging.getLogger(__name__)


def _doc_md(config: ProjectConfig, source: Path) -> str:
    from mlops.lifecycle import lifecycle_plan

    steps = "\n".join(f"{i}. **{s.name}**: {s.doc}" for i, s in enumerate(lifecycle_plan(config), 1))
    return textwrap.dedent(
        f"""\
        # {config.name}

        {config.description or '(no description in the YAML)'}

        - owner: {config.owner}; priority: {config.priority}; model family: `{config.model.family}`
        - techniques: {', '.join(config.training.techniques) or 'none'}
        - defined in `{source}`

        ## Steps
        """
    ) + steps


def _default_args(config: ProjectConfig) -> dict:
    return {
        "owner": config.owner,
        "retries": config.retries,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "priority_weight": config.priority,
        # Fair share: the project's priority, lowered while it used more than its share of the
        # mlx pools recently (see mlops.resources.fair_share; the plugin registers the strategy).
        "weight_rule": "mlops_airflow.fair_share.FairShareWeight",
    }


def _lifecycle_schedule(config: ProjectConfig):
    """The YAML's schedule; with monitoring, also every event of the project's retrain asset."""
    if not config.monitoring.enabled:
        return config.schedule
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

    from mlops.lifecycle import retrain_asset_uri

    retrain = Asset(name=f"{config.name}__retrain", uri=retrain_asset_uri(config.name))
    if config.schedule in (None, "@once", "@continuous"):
        return [retrain]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(config.schedule, timezone="UTC"), assets=[retrain])


def build_lifecycle_dag(config: ProjectConfig, source: Path) -> DAG:
    """The project's lifecycle DAG, one task per step of `mlops.lifecycle.lifecycle_plan` (federated
    projects: a task per client and round, and an aggregate per round, in place of `train`)."""
    from airflow.sdk import DAG, Asset, Param

    from mlops.lifecycle import lifecycle_plan, model_asset_uri
    from operators.bento import BentoBuildOperator
    from operators.dvc import DVCPullOperator, DVCVersionArtifactsOperator
    from operators.evaluate import MLXEvaluateOperator
    from operators.mlflow_register import MLflowRegisterOperator
    from operators.mlx_train import MLXTrainOperator
    from operators.thermal import ThermalSensor

    project = config.model_dump(mode="json")
    default_args = _default_args(config)
    steps = {s.name: s for s in lifecycle_plan(config)}
    with DAG(
        dag_id=config.dag_id,
        description=(config.description or f"Lifecycle of {config.name}")[:200],
        schedule=_lifecycle_schedule(config),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=[config.name, "mlops", *config.tags],
        is_paused_upon_creation=config.paused,  # active unless the YAML says `paused: true`
        auto_register=False,  # the loader exports DAGs by name; see dags/project_errors.py
        doc_md=_doc_md(config, source),
        default_args=default_args,
        params={
            "data_version": Param(
                config.data.version,
                type=["null", "string"],
                description="DVC data version (content hash) to train on; empty = the YAML's or the latest.",
            )
        },
    ) as dag:
        def common(name: str) -> dict:
            step = steps[name]
            placement = {"pool": step.pool, "pool_slots": step.pool_slots} if step.pool else {}
            if step.queue:
                placement["queue"] = step.queue
            return {"task_id": name, "project": project, "doc_md": step.doc, "trigger_rule": step.trigger_rule, **placement}

        scheduling = config.scheduling
        pull_data = DVCPullOperator(version="{{ params.data_version or '' }}", **common("pull_data"))
        thermal_gate = ThermalSensor(
            task_id="thermal_gate",
            threshold=scheduling.thermal_threshold,
            poll_interval=scheduling.thermal_poll_seconds,
            timeout=scheduling.thermal_timeout_seconds,
            on_unknown=scheduling.on_unknown_thermal,
            doc_md=steps["thermal_gate"].doc,
        )
        if config.federated is None:
            train = MLXTrainOperator(data=pull_data.output, **common("train"))
            pull_data >> thermal_gate >> train
        else:  # `train`'s place: rounds of federated averaging, whose last task returns what `train` returns
            train = _federated_rounds(config, common, pull_data, thermal_gate)
        evaluate = MLXEvaluateOperator(data=pull_data.output, training=train.output, **common("evaluate"))
        register = MLflowRegisterOperator(training=train.output, evaluation=evaluate.output, **common("register"))
        model_asset = Asset(name=f"{config.name}__model", uri=model_asset_uri(config.name))
        build = BentoBuildOperator(registered=register.output, outlets=[model_asset], **common("build"))
        version_artifacts = DVCVersionArtifactsOperator(training=train.output, **common("version_artifacts"))
        train >> evaluate >> register >> build >> version_artifacts
    return dag


def _federated_rounds(config: ProjectConfig, common, pull_data, thermal_gate):
    """partition_data, start_federation, TaskGroups `round_<r>` (a client task each + `aggregate`),
    publish_model and participation; returns publish_model (the `train` of the steps after it).

    Client tasks are upstream of `participation` only, never of their round's aggregate, which
    waits for their results in MLflow: a client whose machine is gone never blocks a round, and
    (a non-leaf, `participation` being `all_done`) fails no run whose rounds met their quorum.
    """
    from airflow.sdk import TaskGroup

    from mlops.federated.plan import client_names, client_queue
    from operators.federated import (
        FederatedAggregateOperator,
        FederatedClientOperator,
        ParticipationOperator,
        PartitionDataOperator,
        PublishFederatedModelOperator,
        StartFederationOperator,
    )

    federated = config.federated
    partition = PartitionDataOperator(data=pull_data.output, **common("partition_data"))
    start = StartFederationOperator(data=pull_data.output, partitions=partition.output, **common("start_federation"))
    pull_data >> partition >> thermal_gate >> start
    client_args = {k: v for k, v in common("train_client").items() if k != "task_id"}
    time_limit = timedelta(seconds=federated.round_timeout_s)
    clients, previous = [], start
    for number in range(1, federated.rounds + 1):
        with TaskGroup(f"round_{number}", tooltip=f"Round {number} of {federated.rounds}: clients, then FedAvg"):
            for name in client_names(config):
                queue = client_queue(config, name)  # a node's own queue; None: this machine (the plan's pool, queue)
                placement = {"queue": queue} if queue else {}
                client = FederatedClientOperator(
                    task_id=f"train_{name}",
                    client=name,
                    round=number,
                    federation=start.output,
                    partitions=partition.output,
                    execution_timeout=time_limit,
                    **{**client_args, **placement},
                )
                previous >> client
                clients.append(client)
            aggregate = FederatedAggregateOperator(
                round=number, federation=start.output, data=pull_data.output, **common("aggregate")
            )
            previous >> aggregate
        previous = aggregate
    publish = PublishFederatedModelOperator(federation=start.output, data=pull_data.output, **common("publish_model"))
    previous >> publish
    participation = ParticipationOperator(federation=start.output, **common("participation"))
    clients >> participation
    return publish


def _companion_dag(config: ProjectConfig, source: Path, kind: str, description: str, schedule, doc: str, **kwargs) -> DAG:
    """A project's DAG beside its lifecycle (`<project>__<kind>`): same owner, retries, tags, no catch-up."""
    from airflow.sdk import DAG

    return DAG(
        dag_id=f"{config.name}__{kind}",
        description=description[:200],
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=[config.name, "mlops", kind, *config.tags],
        is_paused_upon_creation=config.paused,
        auto_register=False,
        doc_md=f"# {config.name}: {kind}\n\nDefined in `{source}`.\n\n{doc}",
        default_args=_default_args(config),
        **kwargs,
    )


def build_deploy_dag(config: ProjectConfig, source: Path) -> DAG:
    """`<project>__deploy`: runs on every event of the project's model asset (or by hand, with a version)."""
    from airflow.sdk import Asset, Param

    from mlops.lifecycle import deploy_plan, model_asset_uri
    from operators.deploy import RayServeDeployOperator

    (step,) = deploy_plan(config)
    with _companion_dag(
        config,
        source,
        "deploy",
        f"Deploy {config.name}'s new model versions with zero downtime",
        [Asset(name=f"{config.name}__model", uri=model_asset_uri(config.name))],
        f"1. **deploy**: {step.doc}",
        params={
            "version": Param(
                None, type=["null", "integer"], description="Model version to deploy; empty = the triggering one."
            )
        },
    ) as dag:
        RayServeDeployOperator(
            task_id=step.name,
            project=config.model_dump(mode="json"),
            version="{{ params.version if params.version is not none else '' }}",
            doc_md=step.doc,
            trigger_rule=step.trigger_rule,
        )
    return dag


def build_monitor_dag(config: ProjectConfig, source: Path) -> DAG:
    """`<project>__monitor`: drift, accuracy and performance on the monitoring schedule; retrain and alert."""
    from airflow.sdk import Asset

    from mlops.lifecycle import monitor_plan, retrain_asset_uri
    from operators.monitoring import (
        DriftCheckOperator,
        MonitoringReportOperator,
        RetrainRequestOperator,
        ServingAccuracyOperator,
        ServingPerformanceOperator,
        WebhookAlertOperator,
    )

    steps = {s.name: s for s in monitor_plan(config)}
    project = config.model_dump(mode="json")
    doc = "\n".join(f"{i}. **{s.name}**: {s.doc}" for i, s in enumerate(steps.values(), 1))
    with _companion_dag(
        config, source, "monitor", f"Monitor {config.name}: drift, accuracy, serving performance",
        config.monitoring.schedule, doc,
    ) as dag:
        def common(name: str) -> dict:
            return {"task_id": name, "project": project, "doc_md": steps[name].doc}

        drift = DriftCheckOperator(**common("check_drift"))
        accuracy = ServingAccuracyOperator(**common("check_accuracy"))
        performance = ServingPerformanceOperator(**common("check_performance"))
        report = MonitoringReportOperator(
            drift=drift.output, accuracy=accuracy.output, performance=performance.output, **common("report")
        )
        retrain = Asset(name=f"{config.name}__retrain", uri=retrain_asset_uri(config.name))
        RetrainRequestOperator(report=report.output, outlets=[retrain], **common("request_retrain"))
        WebhookAlertOperator(report=report.output, retries=config.monitoring.alert_retries, **common("alert"))
    return dag


REPORT_DAG_ID = "toolkit__report"


def build_toolkit_report_dag() -> DAG:
    """`toolkit__report`: daily (`MLOPS_REPORT_SCHEDULE`), active from the start (it only reads the projects' runs)."""
    from airflow.sdk import DAG

    from mlops.settings import get_settings
    from operators import report

    with DAG(
        dag_id=REPORT_DAG_ID,
        description="History report of every project (HTML), logged to MLflow; refreshes compare's verdicts",
        schedule=get_settings().report_schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["mlops", "toolkit", "report"],
        is_paused_upon_creation=False,
        auto_register=False,  # dags/toolkit_report.py exports it by name
        doc_md=report.__doc__,
        default_args={"owner": "platform", "retries": 1, "retry_delay": timedelta(minutes=5)},
    ) as dag:
        report.ReportOperator(task_id="report", doc_md=report.ReportOperator.__doc__)
    return dag


_validated: tuple[tuple, tuple] | None = None  # (files' stat key, load_projects result): the last folder read


def load_projects_cached(paths: list[Path]) -> tuple[dict[Path, ProjectConfig], dict[Path, list]]:
    """`mlops.config.load_projects(paths)`, computed once per process while none of the files changed.

    Both DAG loaders validate the whole projects folder; when one process parses both
    (DagBag, `airflow dags test`, bench/parse_dags.py) the second reuses the first's result.
    The key is every file's (device, inode, size, mtime, ctime): an edited, replaced, added or
    removed file misses. A file that cannot be stat'ed is not cached (the loader reports it).
    The result is shared between calls: callers must not change it.
    """
    global _validated
    from mlops.config import load_projects

    try:
        key = tuple((str(p), s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for p in paths for s in [p.stat()])
    except OSError:
        return load_projects(paths)
    if _validated is not None and _validated[0] == key:
        return _validated[1]
    result = load_projects(paths)
    _validated = (key, result)
    return result


@dataclass
class ProjectDags:
    dags: dict[str, DAG] = field(default_factory=dict)
    errors: dict[Path, list[str]] = field(default_factory=dict)

    def error_report(self) -> str:
        import shlex

        from mlops.config.errors import printable

        lines = [f"{len(self.errors)} project file(s) could not become DAGs; the other projects' DAGs are loaded."]
        for path, messages in sorted(self.errors.items()):
            lines.extend(f"  {printable(m)}" for m in messages)
        paths = " ".join(shlex.quote(printable(str(p))) for p in sorted(self.errors))
        lines.append("Check them locally with: mlops validate " + paths)
        return "\n".join(lines)


def collect_project_dags(projects_dir: Path | None = None, build: bool = True) -> ProjectDags:
    """Every valid project's DAG (unless `build` is False), and located errors for every invalid file.

    No file can make this raise: one that cannot be read, decoded or parsed (a FIFO, a broken
    symlink, UTF-16, a billion-laughs document...) is an error of that file; a projects folder
    that cannot be listed is one error naming the folder.
    """
    from mlops.config import ConfigError, project_files
    from mlops.settings import get_settings

    directory = Path(projects_dir or get_settings().projects_dir)
    result = ProjectDags()
    try:
        paths = project_files(directory)
    except OSError as exc:
        error = ConfigError(str(directory), None, None, "", f"cannot list the projects folder: {exc.strerror or exc}")
        result.errors[directory] = [error.format()]
        return result
    configs, errors = load_projects_cached(paths)  # both DAG files validate the folder: once per process
    for path, config_errors in errors.items():
        result.errors[path] = [e.format() for e in config_errors]
    if not build:
        return result
    for path, config in configs.items():
        try:
            built = [build_lifecycle_dag(config, path)]
            if config.serving.enabled:
                built.append(build_deploy_dag(config, path))
            if config.monitoring.enabled:
                built.append(build_monitor_dag(config, path))
            for dag in built:
                result.dags[dag.dag_id] = dag
        except Exception as exc:  # a factory failure for one project must not hide the others
            log.exception("building the DAG of %s failed", path)
            result.errors[path] = [f"{path}: building the DAG failed: {type(exc).__name__}: {exc}"]
    return result
