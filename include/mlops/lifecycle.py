"""The lifecycle plan: which steps a project runs, in which order. Pure data, no Airflow.

A step's name is its task id, the name of the library function it calls and (in
CamelCase) of its operator, so a reader goes from a DAG task to its code in one hop.

Two DAGs per project: `<name>__lifecycle` (data to a built, registered model) and, when
`serving.enabled`, `<name>__deploy`, scheduled on the project's model asset: the lifecycle's
`build` step emits an asset event with the new version, and the deploy DAG runs on it, so a
better model goes live with no manual step. With `monitoring.enabled`, `<name>__monitor`
checks drift, accuracy and serving performance on its schedule and publishes the project's
retrain asset, which the lifecycle is also scheduled on.

With `federated:` the one `train` step becomes rounds of federated averaging (`federated_plan`):
one task per client and round, an aggregate per round that waits for its clients in the triggerer,
and `publish_model`, whose result has the shape `train`'s has, so the steps after it are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.config.schema import ProjectConfig
from mlops.resources.names import COMPUTE_POOL, MEMORY_POOL, memory_slots, queue_for


@dataclass(frozen=True)
class Step:
    name: str
    doc: str
    trigger_rule: str = "all_success"
    pool: str | None = None  # None: Airflow's default pool
    pool_slots: int = 1
    queue: str | None = None  # None: the default queue


def model_asset_uri(project: str) -> str:
    """The asset a project's registered, built model versions are published as."""
    return f"mlops://models/{project}"


def retrain_asset_uri(project: str) -> str:
    """The asset the monitor publishes when the project should retrain (its lifecycle runs on it)."""
    return f"mlops://retrain/{project}"


def monitor_plan(config: ProjectConfig) -> list[Step]:
    """The steps of `<project>__monitor` (empty when monitoring is disabled: no monitor DAG)."""
    if not config.monitoring.enabled:
        return []
    m = config.monitoring
    accuracy = (
        f"below {m.accuracy_threshold} requests retraining" if m.accuracy_threshold is not None else "reported only"
    )
    return [
        Step(
            "check_drift",
            f"Compare the last {m.window_hours:g} h of served inputs (sampled to {m.max_rows} rows, seeded) with the "
            f"serving version's training data from DVC (Evidently); drift = more than {m.drift_threshold:.0%} of "
            "columns drifted. HTML report in MLflow and the Evidently workspace.",
        ),
        Step("check_accuracy", f"Accuracy of the window's predictions against feedback labels; {accuracy}."),
        Step(
            "check_performance",
            f"Serving latency against the version's baseline (degraded at {m.latency_degradation:g}x p50), "
            "with the likely cause: thermal throttling, memory pressure, larger batches, a slower version.",
        ),
        Step("report", "One monitoring report (drift, accuracy, performance, hardware) logged to MLflow; decides."),
        Step(
            "request_retrain",
            f"Publish `{retrain_asset_uri(config.name)}` with the reason (the lifecycle runs on it) when drift "
            f"{'or accuracy ' if m.accuracy_threshold is not None else ''}calls for it.",
        ),
        Step("alert", f"Post the report to {m.alert_connections or 'no'} webhook connection(s); undelivered alerts are kept."),
    ]


def deploy_dag_id(project: str) -> str:
    return f"{project}__deploy"


def deploy_plan(config: ProjectConfig) -> list[Step]:
    """The steps of `<project>__deploy` (empty when serving is disabled: no deploy DAG)."""
    if not config.serving.enabled:
        return []
    s = config.serving
    return [
        Step(
            "deploy",
            f"Bring the new version up on Ray Serve beside the old one ({s.min_replicas}-{s.max_replicas} replicas, "
            f"memory from its measured footprint), health-check and warm it, switch the gateway, drain the old one; "
            "a version failing its health check is rolled back.",
        )
    ]


def lifecycle_plan(config: ProjectConfig) -> list[Step]:
    """The ordered steps of `<project>__lifecycle`, each depending on the one before
    (federated projects: `federated_plan`, whose DAG is not a chain)."""
    if config.federated is not None:
        return federated_plan(config)
    queue = queue_for(config.scheduling.requires, config.scheduling.min_memory_gb)
    memory = config.training.memory_gb
    return [
        _pull_data(),
        _thermal_gate(config),
        Step(
            "train",
            f"Train the `{config.model.family}` MLX model, tracked in MLflow (holds {memory_slots(memory)} "
            f"GB of the `{MEMORY_POOL}` pool; MLX memory limited to {memory:g} GB).",
            pool=MEMORY_POOL,
            pool_slots=memory_slots(memory),
            queue=queue,
        ),
        *_after_training(config),
    ]


def _pull_data() -> Step:
    return Step("pull_data", "Generate or fetch the project's data and pin its DVC version.")


def _thermal_gate(config: ProjectConfig) -> Step:
    return Step(
        "thermal_gate",
        f"Wait while the machine's thermal state is `{config.scheduling.thermal_threshold}` or worse "
        "(deferred to the triggerer: holds no worker slot while waiting).",
    )


def _after_training(config: ProjectConfig) -> list[Step]:
    """evaluate, register, build, version_artifacts: the same for a trained and a federated model."""
    metric = config.evaluation.metric or "the family's first metric"
    gate = (
        f"registers only if {metric} meets {config.evaluation.threshold}"
        if config.evaluation.threshold is not None
        else "no threshold set: every evaluated model is registered"
    )
    queue = queue_for(config.scheduling.requires, config.scheduling.min_memory_gb)
    return [
        Step("evaluate", "Re-score the saved model on the held-out split.", pool=COMPUTE_POOL, queue=queue),
        Step("register", f"Register the model version with its tags; {gate}."),
        Step(
            "build",
            "Package the registered model version as a Bento (BentoML), once per version; publishes the "
            f"`{model_asset_uri(config.name)}` asset event"
            + (f" that triggers `{deploy_dag_id(config.name)}`." if config.serving.enabled else "."),
        ),
        Step(
            "version_artifacts",
            "Version the model folder with DVC and push it (also for models not registered).",
            trigger_rule="none_failed",
        ),
    ]


def federated_plan(config: ProjectConfig) -> list[Step]:
    """The steps of a federated `<project>__lifecycle`. `train_client` documents the per-client tasks
    `round_<r>.train_<client>`; with nodes each runs on its node's queue (`mlops.federated.plan.client_queue`)."""
    from mlops.federated.plan import client_names

    f = config.federated
    clients = client_names(config)
    per_round = f.clients_per_round or len(clients)
    memory = config.training.memory_gb
    if f.nodes:  # each client's machine: its worker's concurrency bounds it, not this machine's pools
        where, placement = "on its node's queue (the machine that holds the client; no pool)", {}
    else:
        where = f"on this machine, holding {memory_slots(memory)} GB of the `{MEMORY_POOL}` pool"
        placement = {
            "pool": MEMORY_POOL,
            "pool_slots": memory_slots(memory),
            "queue": queue_for(config.scheduling.requires, config.scheduling.min_memory_gb),
        }
    client_doc = (
        f"`round_<r>.train_<client>` for each of {', '.join(clients)}: {f.local_epochs} local epoch(s) from the last "
        f"global weights on the client's own partition, {where}; a client not sampled this round, or whose round "
        f"already aggregated without it, is skipped. Time limit {f.round_timeout_s:g} s."
    )
    return [
        _pull_data(),
        Step(
            "partition_data",
            f"Split the training rows among the {len(clients)} clients (label-skewed where the data marks a client, "
            "else a seeded even split); each partition is versioned with DVC.",
        ),
        _thermal_gate(config),
        Step(
            "start_federation",
            f"Open the federation's MLflow run, save the initial global weights, and draw each of the {f.rounds} "
            f"rounds' {per_round} sampled client(s).",
        ),
        Step("train_client", client_doc, **placement),
        Step(
            "aggregate",
            f"`round_<r>.aggregate`: wait (in the triggerer, up to {f.round_timeout_s:g} s) for the round's sampled "
            f"clients, then average the weights of those that reported (FedAvg, weighted by examples) if at least "
            f"{f.min_clients} did, else fail the round; score the global model.",
        ),
        Step(
            "publish_model",
            "Apply the post-training techniques to the last round's global model, evaluate it and save it as "
            "`train` would (MLflow model of the federation's run).",
        ),
        Step(
            "participation",
            "Which client trained which round (from MLflow). Runs whatever the client tasks' outcome, so a lost "
            "client fails no run whose rounds met their quorum.",
            trigger_rule="all_done",
        ),
        *_after_training(config),
    ]
