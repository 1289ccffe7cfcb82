"""The federated lifecycle's steps with JSON in and out, as the operators call them.

`ProjectOperator.run_step("mlops.federated.steps:<fn>", ...)` adds `config` (the project's dict)
and `settings` (its MLOPS_* variables); every other argument is JSON, so a step runs the same in
the task's process or in the project's own environment (`mlops.training.isolated`). A path from
an upstream step is only a hint: data is found by version in this machine's workspace and pulled
when the step before ran on another machine (`mlops.data.local_copies`). Each step only parses
and delegates; the work is in the modules next to this one.
"""

from __future__ import annotations

from typing import Any

from mlops.training.isolated import plain_json


def _project(config: dict[str, Any], settings: dict[str, str]) -> tuple[Any, Any]:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings

    return ProjectConfig.model_validate(config), Settings.from_env(settings)


def _data_path(here: Any, project: str, data_version: str) -> str:
    from mlops.data.local_copies import data_folder

    return str(data_folder(here, project, data_version))


def partition(config: dict[str, Any], settings: dict[str, str], data_path: str, data_version: str) -> dict[str, Any]:
    """Split the training rows among the clients; each partition's DVC version."""
    from mlops.federated.partitions import write_partitions
    from mlops.federated.plan import client_names
    from mlops.training.trainer import project_family

    project, here = _project(config, settings)
    data = project_family(here, project).load_dataset(project, _data_path(here, project.name, data_version))
    return write_partitions(here, project.name, client_names(project), data, data_version, project.data.seed)


def start(
    config: dict[str, Any], settings: dict[str, str], data_version: str, partitions: dict[str, Any],
    run_tags: dict[str, str],
) -> dict[str, Any]:
    """Open the federation (parent MLflow run, round 0 weights, every round's sample)."""
    from mlops.federated.federation import start_federation

    project, here = _project(config, settings)
    return plain_json(start_federation(here, project, data_version, partitions, run_tags))


def train_client(
    config: dict[str, Any], settings: dict[str, str], federation: dict[str, Any], partitions: dict[str, Any],
    round: int, client: str, attempt: int, run_tags: dict[str, str],  # noqa: A002 - the operators' keyword
) -> dict[str, Any]:
    """One client's local update of one round: {"status": "trained" | "not_sampled" | "round_closed", ...}."""
    from mlops.federated.client_update import train_client as update

    project, here = _project(config, settings)
    return plain_json(update(here, project, federation, partitions, int(round), client, int(attempt), run_tags))


def round_results(
    settings: dict[str, str], federation_run_id: str, round: int,  # noqa: A002
    config: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """client -> its counted update of the round (highest finished attempt). `config` is not needed:
    accepted so `run_step` may call it."""
    from mlops.federated.tracking import round_results as results
    from mlops.federated.tracking import tracking_client
    from mlops.settings import Settings

    return plain_json(results(tracking_client(Settings.from_env(settings)), federation_run_id, int(round)))


def aggregate(
    config: dict[str, Any], settings: dict[str, str], federation: dict[str, Any], round: int,  # noqa: A002
    data_path: str, waited_s: float,
) -> dict[str, Any]:
    """Close the round: FedAvg of the reported clients, or `QuorumNotMet`."""
    from mlops.federated.rounds import aggregate_round

    project, here = _project(config, settings)
    path = _data_path(here, project.name, federation["data_version"])
    return plain_json(aggregate_round(here, project, federation, int(round), path, float(waited_s)))


def publish_model(
    config: dict[str, Any], settings: dict[str, str], federation: dict[str, Any], data_path: str, data_version: str
) -> dict[str, Any]:
    """The last global model as the project's model: the dict `train` returns."""
    from mlops.federated.publish import publish_model as publish

    project, here = _project(config, settings)
    return plain_json(publish(here, project, federation, _data_path(here, project.name, data_version), data_version))


def participation(
    settings: dict[str, str], federation: dict[str, Any], config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Which client trained which round. `config` is not needed: accepted so `run_step` may call it."""
    from mlops.federated.rounds import participation as summarise
    from mlops.settings import Settings

    return plain_json(summarise(Settings.from_env(settings), federation))
