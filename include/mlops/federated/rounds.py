"""Close a round: check its quorum, average the updates that arrived (FedAvg), score the new global model.

Like Flower's server, a round does not wait for every sampled client forever: the aggregate step
waits up to `round_timeout_s` (in the triggerer), then averages what reported if at least
`min_clients` did. A machine that left costs the round its update, not the whole training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig
    from mlops.settings import Settings


class QuorumNotMet(RuntimeError):
    """Too few of a round's sampled clients reported in time; the message says who is missing and what to check."""


def quorum_message(
    config: ProjectConfig, federation: dict[str, Any], round_number: int, reported: list[str], missing: list[str],
    waited_s: float,
) -> str:
    from mlops.federated.plan import client_queue

    def where(name: str) -> str:
        queue = client_queue(config, name)
        return f"{name} (queue {queue})" if queue else name

    sampled = len(reported) + len(missing)
    if config.federated is not None and config.federated.nodes:
        check = (
            "check that each missing node's machine is up and its worker serves its queue "
            "(`mlops worker --node <name>` there; `mlops queue` shows queues nobody serves), "
            f"and the logs of round_{round_number}.train_<client>"
        )
    else:
        check = (
            f"check the logs of round_{round_number}.train_<client> (failed, or still queued: `mlops queue` shows "
            "queue and pool waits), or give the round more time (federated.round_timeout_s)"
        )
    return (
        f"project {config.name}: round {round_number} of federation run {federation['run_id']} cannot aggregate: "
        f"{len(reported)} of {sampled} sampled clients reported within {waited_s:.0f} s, below the quorum "
        f"(federated.min_clients = {federation['min_clients']}). Reported: {', '.join(reported) or 'none'}. "
        f"Missing: {', '.join(where(m) for m in missing)}. Nothing was published; {check}."
    )


def aggregate_round(
    settings: Settings, config: ProjectConfig, federation: dict[str, Any], round_number: int, data_path: str,
    waited_s: float,
) -> dict[str, Any]:
    """Average round `round_number`'s reported updates into the next global model, or raise `QuorumNotMet`.

    Logs `federated/round_<r>/global.safetensors` and `summary.json` on the parent run, the metrics
    `global_<metric>`, `round_clients`, `round_examples`, `round_missing` at step r, then the tag
    that closes the round. A retry after that returns the logged summary: clients of the next round
    may already train from these weights, so they never change.
    """
    import mlflow

    from mlops.federated.tracking import CLOSED_ROUND, FAILED_ROUND, SUMMARY_FILE, closed_round, read_summary
    from mlops.federated.tracking import round_results, tracking_client
    from mlops.federated.weights import CLIENT_FILE, GLOBAL_FILE, download, federated_average, round_dir
    from mlops.federated.weights import load_session, save_weights, scratch
    from mlops.training.device import select_device
    from mlops.training.trainer import project_family

    client = tracking_client(settings)
    run_id = federation["run_id"]
    if closed_round(client, run_id) >= round_number:
        return _result(read_summary(client, settings, run_id, round_number))
    sampled = federation["sampled"][str(round_number)]
    results = round_results(client, run_id, round_number)
    reported = [name for name in sampled if name in results]
    missing = sorted(set(sampled) - set(reported))
    counts = {"round_clients": len(reported), "round_missing": len(missing)}
    if len(reported) < federation["min_clients"]:
        mlflow.log_metrics(counts, step=round_number, run_id=run_id)
        client.set_tag(run_id, FAILED_ROUND, str(round_number))
        client.set_terminated(run_id, "FAILED")
        raise QuorumNotMet(quorum_message(config, federation, round_number, reported, missing, waited_s))

    project = project_family(settings, config)
    select_device()
    with scratch(settings) as folder:
        updates = {
            name: (download(client, results[name]["run_id"], CLIENT_FILE, folder / name), results[name]["examples"])
            for name in reported
        }
        global_file = save_weights(folder / GLOBAL_FILE, federated_average(updates))
        session = load_session(project, config, global_file)
        with project.step("evaluate"):
            metrics = session.evaluate(project.load_dataset(config, data_path))
        client.log_artifact(run_id, str(global_file), round_dir(round_number))
    summary = round_summary(round_number, results, reported, missing, metrics, waited_s)
    client.log_dict(run_id, summary, f"{round_dir(round_number)}/{SUMMARY_FILE}")
    mlflow.log_metrics(
        {**{f"global_{k}": v for k, v in metrics.items()}, **counts, "round_examples": summary["examples"]},
        step=round_number, run_id=run_id,
    )
    if FAILED_ROUND in client.get_run(run_id).data.tags:  # a retry met the quorum a first try missed
        client.delete_tag(run_id, FAILED_ROUND)
        client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, CLOSED_ROUND, str(round_number))  # last: from here on the round is over
    return _result(summary)


def round_summary(
    round_number: int, results: dict[str, dict[str, Any]], reported: list[str], missing: list[str],
    metrics: dict[str, float], waited_s: float,
) -> dict[str, Any]:
    """What `federated/round_<r>/summary.json` records: who took part with which run and attempt, the
    global model's scores, and the clients' work as one "epoch" of the published model's run."""
    examples = sum(results[name]["examples"] for name in reported)
    work = {name: results[name]["metrics"] for name in reported}
    return {
        "round": round_number,
        "clients": reported,
        "missing": missing,
        "examples": examples,
        "metrics": metrics,
        "waited_s": waited_s,
        "client_runs": {name: results[name]["run_id"] for name in reported},
        "attempts": {name: results[name]["attempt"] for name in reported},
        "hosts": {name: results[name]["host"] for name in reported},
        "train_loss": sum(work[n]["train_loss"] * results[n]["examples"] for n in reported) / max(examples, 1),
        **{key: sum(work[n].get(key, 0.0) for n in reported) for key in ("samples", "seconds", "steps")},
        "peak_memory_bytes": max(work[n].get("peak_memory_bytes", 0.0) for n in reported),
    }


def _result(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: summary[key] for key in ("round", "clients", "missing", "examples", "metrics")}


def participation(settings: Settings, federation: dict[str, Any]) -> dict[str, Any]:
    """Per round: who was sampled, whose update the round used (or, for a round that never aggregated,
    who finished), who is missing, and on which host each reported client ran."""
    from mlops.federated.tracking import closed_round, read_summary, round_results, tracking_client

    client = tracking_client(settings)
    run_id = federation["run_id"]
    closed = closed_round(client, run_id)
    rounds = {}
    for number in range(1, federation["rounds"] + 1):
        sampled = federation["sampled"][str(number)]
        results = round_results(client, run_id, number)
        aggregated = number <= closed
        reported = read_summary(client, settings, run_id, number)["clients"] if aggregated else [
            name for name in sampled if name in results
        ]
        rounds[str(number)] = {
            "sampled": sampled,
            "reported": reported,
            "missing": sorted(set(sampled) - set(reported)),
            "aggregated": aggregated,
            "hosts": {name: results[name]["host"] for name in reported if name in results},
        }
    return {"rounds": rounds}
