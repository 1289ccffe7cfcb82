"""The Ray Serve deployment of one model version (imported by Ray replicas and by the deployer).

HTTP (through Serve's proxy, at the version's route prefix; the gateway validated the body):

* `GET`  -> {"status": "ok", "project", "version", "pid", "rss_bytes", "batches", "requests"}
* `POST` {"inputs": {name: nested list, batch first}} -> {"outputs": {name: nested list}}

MLX arrays belong to the thread that made them, so each replica restores and predicts on one
dedicated thread; `@serve.batch` gathers the requests that wait meanwhile into one call
(`batching.predict_many`).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray import serve


def model_folder_on_this_node(folder: Path, project: str, version: int) -> Path:
    """`folder` (the deployer's serving cache) when this node has it, else the version downloaded from
    MLflow into this node's own cache: a replica placed on another Mac finds no deployer's path there.
    That node's environment names the tracking server (MLOPS_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    from mlops.serving.registry_models import download_model_dir, mlx_cache_complete

    if mlx_cache_complete(folder):
        return folder
    from mlflow import MlflowClient

    from mlops.settings import get_settings
    from mlops.tracking.client import configure

    settings = get_settings()
    configure(settings)
    return download_model_dir(MlflowClient(), project, version, settings.home / "serving")


@serve.deployment(name="model", max_ongoing_requests=64, graceful_shutdown_timeout_s=30)
class MLXReplica:
    def __init__(self, folder: str, project: str, version: int, max_batch_size: int, batch_wait_s: float):
        from mlops.training.artifacts import model_family, read_manifest, restore_session

        self.project, self.version = project, version
        folder = model_folder_on_this_node(Path(folder), project, version)
        manifest = read_manifest(folder)
        self.signature = model_family(folder, manifest).signature(manifest["hyperparameters"])
        self.mlx = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlx")
        self.session = self.mlx.submit(restore_session, folder).result()
        self.device = self.mlx.submit(_device_name).result()
        self.batched.set_max_batch_size(max_batch_size)
        self.batched.set_batch_wait_timeout_s(batch_wait_s)
        self.batches = self.requests = 0

    async def __call__(self, request: Any) -> dict[str, Any]:
        if request.method == "GET":
            import psutil

            return {
                "status": "ok",
                "project": self.project,
                "version": self.version,
                "device": self.device,
                "pid": os.getpid(),
                "rss_bytes": psutil.Process().memory_info().rss,
                "batches": self.batches,
                "requests": self.requests,
            }
        from mlops.serving.batching import as_arrays

        payload = await request.json()
        outputs = await self.batched(as_arrays(payload["inputs"], self.signature))
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.001)
    async def batched(self, requests: list[dict]) -> list[dict]:
        from mlops.serving.batching import predict_many

        self.batches += 1
        self.requests += len(requests)
        return await asyncio.get_running_loop().run_in_executor(
            self.mlx, predict_many, self.session.predict, requests
        )


def _device_name() -> str:
    import mlx.core as mx

    return "gpu" if mx.default_device() == mx.gpu else "cpu"
