"""The environment every Airflow process of the platform gets (CLI calls and `mlops up`).

AIRFLOW_HOME is this repository (its committed airflow.cfg); the API's JWT secret is
generated once into the state folder, 64 bytes, never committed.

Plain `airflow ...` commands (`export AIRFLOW_HOME=$(pwd)`, nothing else) get the same
defaults from `config/airflow_local_settings.py`, which calls `plain_airflow_defaults`:
the state folder is then `$AIRFLOW_HOME/.mlops` unless MLOPS_HOME says otherwise.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import MutableMapping
from pathlib import Path

from mlops import telemetry
from mlops.settings import REPO_ROOT, Settings

#: Airflow's plugins folder (airflow.cfg's plugins_folder): `mlops_plugin.py` and the `mlops_airflow` package.
PLUGINS_DIR = REPO_ROOT / "plugins"


def _secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


def _jwt_secret(settings: Settings) -> str:
    return _secret(settings.home / "secrets" / "jwt_secret")


def plugins_on_path() -> None:
    """Make `mlops_airflow` importable before Airflow is imported: append the plugins folder to sys.path,
    as Airflow's settings do in every Airflow process (`prepare_syspath_for_config_and_plugins`)."""
    if str(PLUGINS_DIR) not in sys.path:
        sys.path.append(str(PLUGINS_DIR))


def airflow_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["AIRFLOW_HOME"] = str(REPO_ROOT)  # the committed airflow.cfg, whatever the shell had
    env["MLOPS_HOME"] = str(settings.home)
    if "AIRFLOW__API_AUTH__JWT_SECRET" not in env:
        env["AIRFLOW__API_AUTH__JWT_SECRET"] = _jwt_secret(settings)
    env["AIRFLOW__API__HOST"] = settings.bind_host
    env["AIRFLOW__API__PORT"] = str(settings.airflow_port)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{settings.bind_host}:{settings.airflow_port}/execution/"
    env.setdefault("MLFLOW_LOG_UV_FILES", "false")
    telemetry.apply(env)
    (settings.home / "airflow" / "logs").mkdir(parents=True, exist_ok=True)
    return env


def plain_airflow_defaults(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Fill in, where the shell left them unset, what `airflow_environment` would give: for a plain
    `airflow ...` command with only AIRFLOW_HOME set. Returns the names it set.

    Mutates `environ` (default os.environ), so the processes Airflow starts (task runners, the
    api-server's workers) inherit the same values, and the Python side (`Settings.from_env`) agrees
    with airflow.cfg's ${MLOPS_HOME}. Defaults, each only if unset:
    MLOPS_HOME = $AIRFLOW_HOME/.mlops, MLOPS_PROJECTS_DIR = $AIRFLOW_HOME/projects (for the default
    AIRFLOW_HOME, the repository, both are what `Settings` defaults to), the JWT secret from
    <state>/secrets/jwt_secret (so separately started api-server and scheduler agree), the API's
    host/port when MLOPS_BIND_HOST/MLOPS_AIRFLOW_PORT are set, MLFLOW_LOG_UV_FILES=false, telemetry off.
    """
    environ = os.environ if environ is None else environ
    before = dict(environ)
    airflow_home = Path(environ.get("AIRFLOW_HOME") or REPO_ROOT).absolute()
    home = Path(environ.get("MLOPS_HOME") or airflow_home / ".mlops")
    if not home.is_absolute():  # airflow.cfg's sqlite URL must be absolute
        environ["MLOPS_HOME"] = str(home.absolute())
    environ.setdefault("MLOPS_HOME", str(home))
    environ.setdefault("MLOPS_PROJECTS_DIR", str(airflow_home / "projects"))
    settings = Settings.from_env(dict(environ))
    if "AIRFLOW__API_AUTH__JWT_SECRET" not in environ:
        environ["AIRFLOW__API_AUTH__JWT_SECRET"] = _jwt_secret(settings)
    if environ.get("MLOPS_BIND_HOST") or environ.get("MLOPS_AIRFLOW_PORT"):  # else airflow.cfg's [api] holds
        environ.setdefault("AIRFLOW__API__HOST", settings.bind_host)
        environ.setdefault("AIRFLOW__API__PORT", str(settings.airflow_port))
        environ.setdefault(
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://{settings.bind_host}:{settings.airflow_port}/execution/"
        )
    environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    telemetry.apply(environ)
    (settings.home / "airflow" / "logs").mkdir(parents=True, exist_ok=True)
    return sorted(name for name in environ if before.get(name) != environ[name])
