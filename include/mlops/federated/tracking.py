"""How a federation is recorded in MLflow, and the reads every step makes of it.

MLflow is the federation's only shared state: the parent run (the model's run, like a `train`
run) holds the global weights per round and the tag of the last aggregated round; each client's
local update is a nested run tagged with its round, client and Airflow attempt. A retried task
leaves one run per attempt, so readers take the highest finished attempt of each client.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlops.analytics import names

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.settings import Settings

FEDERATED = "mlops.federated"  # "true" on the parent run
ROUND = "mlops.federated.round"
CLIENT = "mlops.federated.client"
ATTEMPT = "mlops.federated.attempt"
HOST = "mlops.federated.host"
CLOSED_ROUND = "mlops.federated.closed_round"  # parent: the last round aggregated (clients of it are too late)
FAILED_ROUND = "mlops.federated.failed_round"  # parent: the round that missed its quorum
CLIENT_KIND = "federated_client"  # names.KIND of a client's run: not a training run of its own (analytics skip it)
SUMMARY_FILE = "summary.json"


def tracking_client(settings: Settings) -> MlflowClient:
    """An MLflow client on the platform's store (fails fast when the server is down)."""
    from mlflow import MlflowClient

    from mlops.tracking.client import configure

    configure(settings)
    return MlflowClient()


def closed_round(client: MlflowClient, run_id: str) -> int:
    """The last round the federation aggregated (0 before the first)."""
    return int(client.get_run(run_id).data.tags.get(CLOSED_ROUND, 0))


def client_run_tags(
    federation_run_id: str, project: str, round_number: int, client: str, attempt: int, host: str
) -> dict[str, str]:
    return {
        "mlflow.parentRunId": federation_run_id,
        "mlflow.runName": f"round {round_number} · {client}",
        names.PROJECT: project,
        names.KIND: CLIENT_KIND,
        ROUND: str(round_number),
        CLIENT: client,
        ATTEMPT: str(attempt),
        HOST: host,
    }


def round_results(client: MlflowClient, federation_run_id: str, round_number: int) -> dict[str, dict[str, Any]]:
    """client -> {"run_id", "attempt", "examples", "host", "metrics"} of the clients that finished round `round_number`:
    one entry per client, its highest FINISHED attempt (a retried client never counts twice)."""
    experiment_id = client.get_run(federation_run_id).info.experiment_id
    query = (
        f"tags.mlflow.parentRunId = '{federation_run_id}' and tags.`{ROUND}` = '{round_number}' "
        "and attributes.status = 'FINISHED'"
    )
    found: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            name, attempt = tags[CLIENT], int(tags.get(ATTEMPT, 1))
            if name not in found or attempt > found[name]["attempt"]:
                found[name] = {
                    "run_id": run.info.run_id,
                    "attempt": attempt,
                    "examples": int(run.data.metrics.get("examples", 0)),
                    "host": tags.get(HOST, ""),
                    "metrics": dict(run.data.metrics),  # what the update took: loss, seconds, memory
                }
        token = page.token
        if not token:
            return dict(sorted(found.items()))


def read_summary(client: MlflowClient, settings: Settings, federation_run_id: str, round_number: int) -> dict[str, Any]:
    """What the aggregation of round `round_number` logged (`federated/round_<r>/summary.json`)."""
    from mlops.federated.weights import download, round_dir, scratch

    with scratch(settings) as folder:
        path = download(client, federation_run_id, f"{round_dir(round_number)}/{SUMMARY_FILE}", folder)
        return json.loads(path.read_text())
