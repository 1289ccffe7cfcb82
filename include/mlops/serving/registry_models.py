"""Servable models: every registered model version in the MLflow registry, restored on demand.

A registered model is named after its project. Each version gets a backend from its MLmodel:

* "mlx": the pyfunc model carries the MLX model folder (safetensors + manifest) as its `model_dir`
  artifact. The folder is downloaded once into `settings.home / "serving" / name / version` and
  restored with `restore_session` on the MLX device `select_device` picks (GPU when MLX has
  one, else CPU).
* "pytorch": no MLX form but a `pytorch` flavor; served by `torch_backend` (cuda, mps, else
  cpu) when the optional PyTorch extra is installed, its signature taken from the MLflow
  tensor signature. The model is downloaded (whole MLflow model folder, same cache) on first use.
* "unsupported": anything else. Listed with the reason, never served ("unknown": its MLmodel
  could not be read).

A version that cannot be served (unsupported, no usable signature, torch missing, a failed
download) is listed with its reason instead of failing the scan, so one foreign or broken
model never hides the others. Asking such a version for a session or a signature raises
`BackendUnavailable` (the gateway's 503).

No MLX or torch import at module level, and no Airflow import at all.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlops.serving.torch_backend import TorchSession
    from mlops.settings import Settings
    from mlops.training.families.base import TrainingSession

MLX, PYTORCH, UNSUPPORTED, UNKNOWN = "mlx", "pytorch", "unsupported", "unknown"
MODEL_DIR_ARTIFACT = "model_dir"
MLMODEL_FILE = "MLmodel"


class BackendUnavailable(RuntimeError):
    """The version's backend cannot run in this environment (the gateway answers 503 with the reason)."""


@dataclass
class ModelVersion:
    """One registered version: its backend, where its files are cached, what it is, and (once loaded) its session."""

    name: str
    version: int
    run_id: str | None
    tags: dict[str, str]
    folder: Path
    backend: str = MLX
    source: str | None = None  # the registry's download URI of the whole MLflow model
    manifest: dict[str, Any] = field(default_factory=dict)  # MLX versions: the model folder's manifest
    declared_signature: dict[str, Any] | None = None
    problem: str | None = None  # why this gateway cannot serve the version (None: it can)
    transient: bool = False  # the problem is a failed download: the next reload retries, /readyz waits
    session: TrainingSession | TorchSession | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def family(self) -> str | None:
        """The MLX model family (None for other backends)."""
        family = self.manifest.get("family") or (self.tags.get("model_family") if self.backend == MLX else None)
        return None if family is None else str(family)

    @property
    def signature(self) -> dict[str, Any]:
        """What a predict is validated against; raises for a version without one (it cannot be served).

        A version with a signature but a problem (torch missing) still validates the request first.
        """
        if self.declared_signature is None:
            raise BackendUnavailable(self.unservable_message())
        return self.declared_signature

    def unservable_message(self) -> str:
        return f"{self.name} v{self.version} ({self.backend}) cannot be served here: {self.problem}"

    def describe(self, device: str | None) -> dict[str, Any]:
        default_dtype = str(self.manifest.get("dtype", "float32")) if self.backend == MLX else None
        return {
            "version": self.version,
            "run_id": self.run_id,
            "family": self.family,
            "backend": self.backend,
            "device": device,
            "replicas": 0 if self.problem else 1,
            "servable": self.problem is None,
            "reason": self.problem,
            "dtype": self.tags.get("dtype", default_dtype),
            "techniques": list(self.manifest.get("techniques", [])),
            "loaded": self.session is not None,
            "tags": dict(self.tags),
        }


def backend_of(mlmodel: dict[str, Any]) -> tuple[str, str | None]:
    """(backend, why it is unsupported) from a version's MLmodel: MLX first, PyTorch as the fallback."""
    flavors = mlmodel.get("flavors") or {}
    artifacts = (flavors.get("python_function") or {}).get("artifacts") or {}
    if MODEL_DIR_ARTIFACT in artifacts:
        return MLX, None
    if PYTORCH in flavors:
        return PYTORCH, None
    return UNSUPPORTED, (
        f"flavors {sorted(flavors)}: the gateway serves MLX models (a pyfunc with a `{MODEL_DIR_ARTIFACT}` "
        f"artifact) and models with a `pytorch` flavor"
    )


def _model_dir_path(mlmodel: dict[str, Any]) -> str:
    """Artifact path of `model_dir` inside the logged model (e.g. "artifacts/<project>")."""
    return mlmodel["flavors"]["python_function"]["artifacts"][MODEL_DIR_ARTIFACT]["path"]


def fetch_mlmodel(base_uri: str) -> dict[str, Any]:
    """A version's MLmodel (a few hundred bytes), read without downloading the model itself."""
    import mlflow
    import yaml

    with tempfile.TemporaryDirectory(prefix="mlmodel-") as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{base_uri}/{MLMODEL_FILE}", dst_path=tmp)
        return yaml.safe_load(Path(path).read_text())


def _download_to_cache(artifact_uri: str, folder: Path, expected: str) -> Path:
    """Download `artifact_uri` (a folder holding `expected`) into `folder`: staged, then renamed."""
    import mlflow

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(staging)))
        if not (downloaded / expected).is_file():
            raise FileNotFoundError(f"{artifact_uri} holds no {expected}")
        if folder.exists():
            shutil.rmtree(folder)
        downloaded.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def mlx_cache_complete(folder: Path) -> bool:
    from mlops.training.artifacts import MANIFEST_FILE, WEIGHTS_FILE

    return (folder / MANIFEST_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def download_model_dir(
    client: Any, name: str, version: int, cache_root: Path, mlmodel: dict[str, Any] | None = None
) -> Path:
    """The version's MLX model folder in the local cache, downloaded if absent (`mlmodel`: already read)."""
    from mlops.training.artifacts import MANIFEST_FILE

    folder = cache_root / name / str(version)
    if mlx_cache_complete(folder):
        return folder  # registered versions are immutable: a complete cache entry stays valid
    base = client.get_model_version_download_uri(name, str(version)).rstrip("/")
    mlmodel = mlmodel if mlmodel is not None else fetch_mlmodel(base)
    if backend_of(mlmodel)[0] != MLX:
        raise ValueError(f"{name} v{version} is not an MLX model: its MLmodel has no `{MODEL_DIR_ARTIFACT}` artifact")
    return _download_to_cache(f"{base}/{_model_dir_path(mlmodel)}", folder, MANIFEST_FILE)


def download_model_version(entry: ModelVersion) -> Path:
    """The whole MLflow model of a (pytorch) version in the local cache, downloaded if absent."""
    if (entry.folder / MLMODEL_FILE).is_file():
        return entry.folder
    if entry.source is None:
        raise ValueError(f"{entry.name} v{entry.version}: no download URI")
    return _download_to_cache(entry.source, entry.folder, MLMODEL_FILE)


class ModelCatalog:
    """What the registry holds (scanned by `reload`, one model by `reload_project`) plus the sessions loaded so far.

    Thread-safe; sessions are restored lazily by `session(...)` and kept until a reload
    finds their version gone.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cache_root = settings.home / "serving"
        self.device: str | None = None  # MLX's, once a session is restored
        self.on_session_loaded: Callable[[str], object] | None = None  # called (with why) after each load
        self.torch_device: str | None = None  # where pytorch versions run (known once torch is imported)
        self._versions: dict[str, dict[int, ModelVersion]] = {}
        self._lock = threading.RLock()
        self._scan_lock = threading.Lock()  # one registry scan at a time (whole or one model)
        self.scanned = False
        self.last_error: str | None = None

    def reload(self) -> dict[str, list[int]]:
        """Rescan the registry: new versions appear, deleted ones go; loaded sessions are kept.

        Versions listed with a problem are looked at again (a download may work now, torch may
        have been installed). Only a registry that cannot be listed makes this raise.
        """
        with self._scan_lock:
            try:
                client = self._client()
                found = {
                    registered.name: self._versions_of(client, registered.name)
                    for registered in client.search_registered_models()
                }
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            found = {name: versions for name, versions in found.items() if versions}
            self._note_torch(found)
            with self._lock:
                self._versions = found
                self.scanned = True
                self.last_error = None
        return self.names()

    def reload_project(self, name: str) -> list[int]:
        """Rescan one registered model's versions (what `reload` does, for `name` only); its version numbers.

        A model with no version left (or never registered) is dropped. Scans never overlap: a
        scan's view is never overwritten by an older one.
        """
        with self._scan_lock:
            try:
                versions = self._versions_of(self._client(), name)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            self._note_torch({name: versions})
            with self._lock:
                others = {n: v for n, v in self._versions.items() if n != name}
                self._versions = {**others, name: versions} if versions else others
        return sorted(versions)

    def _client(self) -> Any:
        from mlflow import MlflowClient

        from mlops.tracking.client import configure

        configure(self.settings)
        return MlflowClient(tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.tracking_uri)

    def _versions_of(self, client: Any, name: str) -> dict[int, ModelVersion]:
        """The registered model's versions: known entries kept, new ones (and those with a problem) scanned."""
        found: dict[int, ModelVersion] = {}
        for mv in client.search_model_versions(f"name = '{name}'"):
            number = int(mv.version)
            with self._lock:
                known = self._versions.get(name, {}).get(number)
            if known is None or known.problem is not None:
                known = self._scan_version(client, name, mv)
            found[number] = known
        return found

    def _note_torch(self, found: dict[str, dict[int, ModelVersion]]) -> None:
        """Learn where pytorch versions run, the first time a servable one is listed."""
        if self.torch_device is None and any(
            e.backend == PYTORCH and e.problem is None for versions in found.values() for e in versions.values()
        ):
            from mlops.serving.torch_backend import preferred_device

            try:
                self.torch_device = preferred_device()  # imports torch: here, off the event loop
            except Exception:  # a broken torch install: loading the session will say what is wrong
                self.torch_device = None

    def _scan_version(self, client: Any, name: str, mv: Any) -> ModelVersion:
        """A version's entry: backend, signature, and (MLX) the cached model folder; problems recorded."""
        from mlops.serving import torch_backend
        from mlops.training.artifacts import model_signature, read_manifest

        number = int(mv.version)
        entry = ModelVersion(
            name=name, version=number, run_id=mv.run_id, tags=dict(mv.tags or {}),
            folder=self.cache_root / name / str(number),
        )
        try:
            if not mlx_cache_complete(entry.folder):
                entry.backend = UNKNOWN
                entry.source = client.get_model_version_download_uri(name, str(number)).rstrip("/")
                cached = entry.folder / MLMODEL_FILE  # a pytorch version already downloaded
                mlmodel = torch_backend.read_mlmodel(entry.folder) if cached.is_file() else fetch_mlmodel(entry.source)
                entry.backend, entry.problem = backend_of(mlmodel)
                if entry.backend == UNSUPPORTED:
                    return entry
                if entry.backend == PYTORCH:
                    entry.declared_signature = torch_backend.contract_from_mlmodel(mlmodel).signature
                    if not torch_backend.torch_installed():
                        entry.problem = torch_backend.missing_torch_reason()
                    return entry
                download_model_dir(client, name, number, self.cache_root, mlmodel)
            entry.manifest = read_manifest(entry.folder)
            entry.declared_signature = model_signature(entry.folder, entry.manifest)
        except torch_backend.SignatureProblem as exc:
            entry.problem = str(exc)
        except Exception as exc:  # registry/artifact store hiccup, a corrupt cache: this version only
            entry.problem, entry.transient = f"could not read it: {type(exc).__name__}: {exc}", True
        return entry

    def ensure_scanned(self) -> None:
        if not self.scanned:
            self.reload()

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._versions

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

    def session(self, entry: ModelVersion) -> TrainingSession | TorchSession:
        """The loaded session of `entry`, on first use (call from the gateway's model thread).

        Raises BackendUnavailable for a version this gateway cannot serve, naming why.
        """
        if entry.session is None:
            with entry.lock:
                if entry.session is None:
                    if entry.problem is not None:
                        raise BackendUnavailable(entry.unservable_message())
                    entry.session = self._torch_session(entry) if entry.backend == PYTORCH else self._mlx_session(entry)
                    if self.on_session_loaded is not None:
                        self.on_session_loaded(f"loading {entry.name} v{entry.version}")
        return entry.session

    def _mlx_session(self, entry: ModelVersion) -> TrainingSession:
        from mlops.training.artifacts import restore_session
        from mlops.training.device import select_device

        if self.device is None:
            self.device = select_device()
        return restore_session(entry.folder)

    def _torch_session(self, entry: ModelVersion) -> TorchSession:
        from mlops.serving.torch_backend import load_torch_session, missing_torch_reason

        try:
            session = load_torch_session(download_model_version(entry))
        except ImportError as exc:
            raise BackendUnavailable(f"{entry.name} v{entry.version} (pytorch): {missing_torch_reason()} ({exc})") from exc
        except Exception as exc:  # not downloadable, or PyTorch/MLflow refuse to load it: say which
            raise BackendUnavailable(
                f"{entry.name} v{entry.version} (pytorch) could not be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        self.torch_device = session.device
        return session

    def latest(self) -> list[ModelVersion]:
        """Every model's latest version, except those that can never be served here (/readyz loads these).

        A version with a transient problem (a failed download) stays, so readiness waits for it.
        """
        with self._lock:
            latest = [versions[max(versions)] for versions in self._versions.values() if versions]
        return [entry for entry in latest if entry.problem is None or entry.transient]

    def device_of(self, entry: ModelVersion) -> str | None:
        """Where the version runs (or would): MLX's device, torch's, or None when it cannot run here."""
        if entry.backend == MLX:
            return self.device or _default_device()
        if entry.backend == PYTORCH and entry.problem is None:
            return getattr(entry.session, "device", None) or self.torch_device
        return None

    def describe(self) -> list[dict[str, Any]]:
        """What `/v1/models` lists: one entry per registered model (backend, device from its latest version)."""
        with self._lock:
            items = sorted(self._versions.items())
        out = []
        for name, versions in items:
            described = [versions[v].describe(self.device_of(versions[v])) for v in sorted(versions)]
            latest = versions[max(versions)]
            out.append({
                "name": name,
                "latest_version": latest.version,
                "versions": described,
                "family": latest.family,
                "backend": latest.backend,
                "device": described[-1]["device"],
                "replicas": described[-1]["replicas"],
                "signature": latest.declared_signature,
            })
        return out


def _default_device() -> str:
    """The device MLX will use (without changing MLX's default)."""
    import mlx.core as mx

    cuda = getattr(mx, "cuda", None)
    return "gpu" if mx.metal.is_available() or bool(cuda and cuda.is_available()) else "cpu"
