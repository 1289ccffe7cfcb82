"""Each client's share of the project's training rows, versioned with DVC so any machine fetches its own.

A client task may run on another Mac with its own MLOPS_HOME: all it shares with the coordinator is
the DVC remote and MLflow. So the coordinator writes one folder per client
(`<dvc workspace>/federated/<project>/<client>/`, `train_*.npy` + `spec.json`), `dvc add`s and pushes
it, and hands on only its content hash; the client checks that hash out of the remote into its own
workspace. The split is a pure function of the data and `data.seed`, so the same data version
always gives the same partition versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.data.dvc_workspace import (
    add_and_push,
    checkout_version,
    open_workspace,
    push,
    tracked_hash,
    workspace_lock,
)

if TYPE_CHECKING:
    import numpy as np

    from mlops.settings import Settings

OWNER = "train_client"  # a family's column saying which client holds a training row (federated_mlp's)


def partition_paths(settings: Settings, project: str, client: str) -> tuple[Path, Path]:
    """(partition folder, its .dvc file) of one client in this machine's workspace."""
    folder = settings.dvc_workspace / "federated" / project / client
    return folder, folder.with_name(client + ".dvc")


def split_rows(data: dict[str, np.ndarray], clients: int, seed: int) -> list[np.ndarray]:
    """Training row indices of each client, disjoint and covering every row.

    Rows the data marks with an owner (`train_client`, label-skewed: the non-IID split FedAvg is
    about) go to client `owner % clients`; unmarked data is dealt out evenly in a `seed`ed order.
    """
    import numpy as np

    rows = len(next(v for k, v in data.items() if k.startswith("train_")))
    if OWNER in data:
        owner = np.asarray(data[OWNER]) % clients
    else:
        owner = np.random.default_rng(seed).permutation(rows) % clients
    return [np.flatnonzero(owner == i) for i in range(clients)]


def client_arrays(data: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """One client's `train_*` rows; its `train_client` becomes 0: the partition is that client's own,
    so a family that trains each marked client (federated_mlp) makes exactly one local update."""
    import numpy as np

    arrays = {name: np.asarray(value[rows]) for name, value in data.items() if name.startswith("train_")}
    if OWNER in arrays:
        arrays[OWNER] = np.zeros(len(rows), dtype=arrays[OWNER].dtype)
    return arrays


def write_partitions(
    settings: Settings, project: str, clients: list[str], data: dict[str, np.ndarray], data_version: str, seed: int
) -> dict[str, Any]:
    """Split `data` among `clients`, `dvc add` + push each partition; return every client's version.

    A partition whose spec (data version, clients, seed) is unchanged keeps its version and is only
    pushed again (a no-op unless an earlier push failed).
    """
    from mlops.data.project_data import read_spec, write_dataset

    parts = split_rows(data, len(clients), seed)
    empty = [name for name, rows in zip(clients, parts) if len(rows) == 0]
    if empty:
        raise ValueError(
            f"project {project}: client(s) {', '.join(empty)} get no training rows out of "
            f"{sum(len(p) for p in parts)} split among {len(clients)} clients"
            + (f" (rows go to client `{OWNER} % {len(clients)}`: let the family mark rows for every client, "
               "e.g. model.hyperparameters.clients = the number of clients)" if OWNER in data else "")
        )
    found: dict[str, dict[str, Any]] = {}
    with workspace_lock(settings.dvc_workspace):
        repo = open_workspace(settings)
        for name, rows in zip(clients, parts):
            folder, dvc_file = partition_paths(settings, project, name)
            spec = {"project": project, "client": name, "clients": clients, "data_version": data_version, "seed": seed}
            if dvc_file.exists() and read_spec(folder) == spec:
                md5 = tracked_hash(dvc_file)
                push(repo, dvc_file)
            else:
                write_dataset(folder, client_arrays(data, rows), spec)
                md5 = add_and_push(repo, folder)
            found[name] = {"version": md5, "examples": int(len(rows))}
    return {"data_version": data_version, "clients": found}


def load_partition(settings: Settings, project: str, client: str, version: str) -> dict[str, np.ndarray]:
    """Client `client`'s partition at `version`, from this machine's workspace, pulled from the DVC
    remote when absent or another version; arrays memory-mapped (opened under the lock, so a
    concurrent re-partition cannot swap the files under them)."""
    from mlops.data.project_data import load_arrays

    folder, dvc_file = partition_paths(settings, project, client)
    with workspace_lock(settings.dvc_workspace):
        if not (folder.is_dir() and tracked_hash(dvc_file) == version):
            checkout_version(open_workspace(settings), dvc_file, folder, version)
        return load_arrays(folder)
