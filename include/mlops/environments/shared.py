"""The shared layer (what the repo's uv.lock installs), the isolated runtime, and the one way uv is run.

**The shared layer** is what `uv sync` installs from the committed `uv.lock` with no flags: the
default dependencies of `pyproject.toml` plus its default dependency groups (uv's default: `dev`),
no optional extras (gcs, azure, celery, pytorch), the project itself excluded (mlops runs from
source). `uv export --frozen` lists exactly that set, one `name==version ; marker` line per
package of the universal lock; the markers are evaluated here for this interpreter and platform.
A deployment synced with `--no-dev` or `--extra ...` has a different layer: not modelled.

**The isolated runtime** is what the platform's own training code imports inside a project's
isolated environment (`RUNTIME_PACKAGES`); mlops itself comes from source via PYTHONPATH.

uv is always this interpreter's `python -m uv` (never one from PATH), with `UV_PYTHON` set to
this interpreter, a timeout on every call, and the repo root as working directory (so index
settings in pyproject.toml / uv.toml apply). The rest of the environment passes through: an
`UV_INDEX_URL` or `UV_OFFLINE=1` the user set is honoured.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mlops.environments.requirements import canonical, marker_holds

UV_TIMEOUT_SECONDS = 180.0  # one uv call; a cold resolution of the runtime takes a few seconds

# Derived from what `mlops.training.trainer.train_project` and `mlops.training.evaluate.evaluate_model`
# import when they run (traced: train + evaluate of a synthetic and a CSV project, sys.modules mapped to
# distributions), keeping the distributions mlops code imports itself; their own dependencies follow from
# the resolution. dist name -> the pyproject.toml dependency whose bounds (and markers, extras) apply.
RUNTIME_PACKAGES: dict[str, str | None] = {
    "mlx": "mlx",  # mlx[cpu] on Linux, mlx (Metal) on macOS: both declarations of pyproject.toml
    "numpy": "numpy",
    "pandas": "pandas",  # data.loaders: .csv / .parquet / .jsonl tables
    "pyarrow": None,  # pandas.read_parquet
    "mlflow-skinny": "mlflow",  # the tracking client and pyfunc logging; mlflow's bounds (same versions)
    "sqlalchemy": None,  # the default sqlite:/// tracking store (not needed with an http:// one)
    "alembic": None,  # its schema migrations
    "pydantic": "pydantic",  # mlops.config.schema
    "pyyaml": "pyyaml",  # project YAML
    "packaging": None,  # environment.requirements in the schema
    "croniter": None,  # schedule checks of the schema
    "psutil": "psutil",  # hardware probe, memory snapshots
    # Serving: the project's Ray Serve replicas run in its environment (runtime_env py_executable), and
    # a Ray worker must import the cluster's own Ray version (ray[serve], pinned like the shared layer).
    "ray": "ray",
}


class UvError(RuntimeError):
    """A uv call that failed: `reason` is uv's message on one line; `unreachable` when the package
    index could not be reached (no network, a proxy, a dead mirror) rather than answering no."""

    def __init__(self, reason: str, unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


_NETWORK = re.compile(
    r"error sending request|Request failed after|tcp connect error|dns error|Connection refused|"
    r"Could not connect|connection (reset|closed)|operation timed out|timed out|certificate|"
    r"Network is unreachable|failed to lookup address|not found in the cache|network was disabled",
    re.IGNORECASE,
)
_GENERIC = {"No solution found when resolving dependencies", "No solution found when resolving dependencies:"}
_PREFIX = re.compile(r"^\s*(error:|cause:|caused by:|╰─▶|├─▶|[|│])\s*", re.IGNORECASE)


def uv_reason(stderr: str) -> str:
    """uv's error message on one line: the error and its causes, without hints or progress lines.

    uv wraps a long cause over several lines at the terminal's width: a line without a marker
    (`error:`, `╰─▶`, ...) continues the one before it, whatever the width was."""
    lines: list[str] = []
    started = skipping = False
    for raw in stderr.splitlines():
        line = raw.strip()
        if line.lower().startswith("error:"):
            started = True
        if not started or not line:
            continue
        marked = bool(_PREFIX.match(line)) or line.lower().startswith("hint:")
        if marked:
            skipping = line.lower().startswith("hint:")
        if skipping:
            continue
        line = _PREFIX.sub("", line).strip()
        if not marked and lines:  # the wrapped rest of the previous cause
            lines[-1] = f"{lines[-1]} {line}"
        elif line and line not in _GENERIC:
            lines.append(line)
    text = "; ".join(line.rstrip(".;:") for line in lines) or stderr.strip() or "uv failed without a message"
    return re.sub(r"\s+", " ", text)


def run_uv(args: list[str], cwd: Path, timeout: float = UV_TIMEOUT_SECONDS) -> str:
    """stdout of `python -m uv ARGS`; `UvError` with uv's reason when it fails, times out or is missing."""
    env = {**os.environ, "UV_PYTHON": sys.executable, "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "uv", *args]
    try:  # its own process group: a timeout also ends the build backends uv may have started
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    except OSError as exc:
        raise UvError(f"cannot run uv with {sys.executable}: {exc}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise UvError(f"`uv {args[0]}` took longer than {timeout:g} s (a slow or unreachable package index?)",
                      unreachable=True) from None
    if process.returncode != 0:
        if "No module named uv" in stderr:
            raise UvError(f"uv is not installed in {sys.prefix}: `uv sync` installs it (a dependency of the platform)")
        unreachable = bool(_NETWORK.search(stderr)) and "not found in the package registry" not in stderr
        raise UvError(uv_reason(stderr), unreachable=unreachable)
    return stdout


def repo_lock_file() -> Path:
    from mlops.settings import REPO_ROOT

    return REPO_ROOT / "uv.lock"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class SharedLayer:
    """The shared layer's pins for this interpreter and platform, from one version of uv.lock."""

    lock_file: Path
    digest: str  # sha256 of uv.lock: a lock file resolved against another version of it is stale
    pins: dict[str, str] = field(repr=False)  # canonical name -> version

    def constraints(self) -> list[str]:
        return [f"{name}=={version}" for name, version in sorted(self.pins.items())]


def shared_layer(lock_file: Path | None = None, timeout: float = UV_TIMEOUT_SECONDS) -> SharedLayer:
    """The shared layer of `lock_file` (the repo's uv.lock), exported once per process and lock version."""
    lock_file = (lock_file or repo_lock_file()).resolve()
    if not lock_file.is_file():
        raise UvError(f"no shared lock at {lock_file}: run `uv lock` in {lock_file.parent}")
    return _exported(lock_file, file_digest(lock_file), timeout)


@functools.lru_cache(maxsize=8)
def _exported(lock_file: Path, digest: str, timeout: float) -> SharedLayer:
    text = run_uv(
        ["export", "--frozen", "--format", "requirements.txt", "--no-hashes", "--no-emit-project",
         "--no-header", "--no-annotate", "--project", str(lock_file.parent)],
        cwd=lock_file.parent, timeout=timeout,
    )
    return SharedLayer(lock_file, digest, parse_pins(text))


def parse_pins(text: str) -> dict[str, str]:
    """`name==version [; marker]` lines (a uv export, a compiled file) -> {canonical name: version},
    keeping the lines whose marker holds here."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line or line.startswith("-"):
            continue
        spec, _, marker = line.partition(";")
        name, sep, version = spec.partition("==")
        if sep and marker_holds(marker.strip() or None):
            pins[canonical(name.strip().split("[", 1)[0])] = version.strip()
    return pins


def runtime_requirements(pyproject: Path | None = None) -> list[str]:
    """The isolated runtime as requirement lines: each `RUNTIME_PACKAGES` entry with the bounds, extras
    and markers pyproject.toml declares for it (both of mlx's platform lines), else the bare name."""
    pyproject = pyproject or repo_lock_file().with_name("pyproject.toml")
    declared = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
    from packaging.requirements import Requirement

    parsed = [Requirement(line) for line in declared]
    lines = []
    for dist, source in RUNTIME_PACKAGES.items():
        matches = [r for r in parsed if source and canonical(r.name) == canonical(source)]
        if not matches:
            lines.append(dist)
            continue
        for r in matches:
            extras = f"[{','.join(sorted(r.extras))}]" if r.extras and dist == source else ""
            marker = f"; {r.marker}" if r.marker else ""
            lines.append(f"{dist}{extras}{r.specifier}{marker}")
    return lines
