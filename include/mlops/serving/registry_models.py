"""Servable models: every registered model version in the MLflow registry, restored on demand.

A registered model is named after its project; each version's pyfunc model carries the MLX
model folder (safetensors + manifest) as its `model_dir` artifact. The folder is downloaded
once into `settings.home / "serving" / name / version` and restored with `restore_session`
on the MLX device `select_device` picks (GPU when MLX has one, else CPU). Only the "mlx"
backend exists for now.

No MLX import at module level, and no Airflow import at all.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.training.families.base import TrainingSession

BACKEND = "mlx"
MODEL_DIR_ARTIFACT = "model_dir"


class BackendUnavailable(RuntimeError):
    """The version's backend cannot run in this environment (the gateway answers 503 with the reason)."""


@dataclass
class ModelVersion:
    """One registered version: where its folder is cached, what it is, and (once loaded) its session."""

    name: str
    version: int
    run_id: str | None
    tags: dict[str, str]
    folder: Path
    manifest: dict[str, Any]
    signature: dict[str, Any]
    session: TrainingSession | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def family(self) -> str:
        return str(self.manifest["family"])

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "family": self.family,
            "dtype": self.tags.get("dtype", str(self.manifest.get("dtype", "float32"))),
            "techniques": list(self.manifest.get("techniques", [])),
            "loaded": self.session is not None,
            "tags": dict(self.tags),
        }


def _model_dir_path(mlmodel_text: str) -> str:
    """Artifact path of `model_dir` inside the logged model (e.g. "artifacts/<project>")."""
    import yaml

    mlmodel = yaml.safe_load(mlmodel_text)
    return mlmodel["flavors"]["python_function"]["artifacts"][MODEL_DIR_ARTIFACT]["path"]


def download_model_dir(client: Any, name: str, version: int, cache_root: Path) -> Path:
    """The version's model folder in the local cache, downloaded (staged, then renamed) if absent."""
    import mlflow

    from mlops.training.artifacts import MANIFEST_FILE, WEIGHTS_FILE

    folder = cache_root / name / str(version)
    if (folder / MANIFEST_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
        return folder  # registered versions are immutable: a complete cache entry stays valid
    base = client.get_model_version_download_uri(name, str(version)).rstrip("/")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder.parent))
    try:
        mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=str(staging / "meta"))
        relative = _model_dir_path(Path(mlmodel).read_text())
        downloaded = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{relative}", dst_path=str(staging / "files"))
        )
        if not (downloaded / MANIFEST_FILE).is_file():
            raise FileNotFoundError(f"{name} v{version}: {relative} holds no {MANIFEST_FILE}")
        if folder.exists():
            shutil.rmtree(folder)
        downloaded.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


class ModelCatalog:
    """What the registry holds (scanned by `reload`) plus the sessions loaded so far.

    Thread-safe; sessions are restored lazily by `session(...)` and kept until a reload
    finds their version gone.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cache_root = settings.home / "serving"
        self.device: str | None = None
        self._versions: dict[str, dict[int, ModelVersion]] = {}
        self._lock = threading.RLock()
        self.scanned = False
        self.last_error: str | None = None

    def reload(self) -> dict[str, list[int]]:
        """Rescan the registry: new versions appear, deleted ones go; loaded sessions are kept."""
        from mlflow import MlflowClient

        from mlops.tracking.client import configure
        from mlops.training.artifacts import read_manifest
        from mlops.training.families import get_family

        try:
            configure(self.settings)
            client = MlflowClient(tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.tracking_uri)
            found: dict[str, dict[int, ModelVersion]] = {}
            for registered in client.search_registered_models():
                name = registered.name
                for mv in client.search_model_versions(f"name = '{name}'"):
                    number = int(mv.version)
                    with self._lock:
                        known = self._versions.get(name, {}).get(number)
                    if known is not None:
                        found.setdefault(name, {})[number] = known
                        continue
                    folder = download_model_dir(client, name, number, self.cache_root)
                    manifest = read_manifest(folder)
                    signature = get_family(manifest["family"]).signature(manifest["hyperparameters"])
                    found.setdefault(name, {})[number] = ModelVersion(
                        name=name,
                        version=number,
                        run_id=mv.run_id,
                        tags=dict(mv.tags or {}),
                        folder=folder,
                        manifest=manifest,
                        signature=signature,
                    )
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        with self._lock:
            self._versions = found
            self.scanned = True
            self.last_error = None
        return self.names()

    def ensure_scanned(self) -> None:
        if not self.scanned:
            self.reload()

    def names(self) -> dict[str, list[int]]:
        with self._lock:
            return {name: sorted(versions) for name, versions in sorted(self._versions.items())}

    def get(self, name: str, version: int | str = "latest") -> ModelVersion | None:
        """The version (a number or "latest" = highest number), or None when unknown."""
        with self._lock:
            versions = self._versions.get(name)
            if not versions:
                return None
            if version == "latest":
                return versions[max(versions)]
            return versions.get(int(version))

    def session(self, entry: ModelVersion) -> TrainingSession:
        """The restored MLX session of `entry`, loaded on first use (call from the MLX thread)."""
        if entry.session is None:
            with entry.lock:
                if entry.session is None:
                    from mlops.training.artifacts import restore_session
                    from mlops.training.device import select_device

                    if self.device is None:
                        self.device = select_device()
                    entry.session = restore_session(entry.folder)
        return entry.session

    def latest(self) -> list[ModelVersion]:
        with self._lock:
            return [versions[max(versions)] for versions in self._versions.values() if versions]

    def describe(self) -> list[dict[str, Any]]:
        """What `/v1/models` lists: one entry per registered model."""
        with self._lock:
            items = sorted(self._versions.items())
        out = []
        for name, versions in items:
            latest = versions[max(versions)]
            out.append({
                "name": name,
                "latest_version": latest.version,
                "versions": [versions[v].describe() for v in sorted(versions)],
                "family": latest.family,
                "backend": BACKEND,
                "device": self.device or _default_device(),
                "replicas": 1,
                "signature": latest.signature,
            })
        return out


def _default_device() -> str:
    """The device MLX will use (without changing MLX's default)."""
    import mlx.core as mx

    cuda = getattr(mx, "cuda", None)
    return "gpu" if mx.metal.is_available() or bool(cuda and cuda.is_available()) else "cpu"
