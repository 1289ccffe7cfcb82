"""Plain Airflow commands work with only AIRFLOW_HOME set (no `mlops`, no MLOPS_HOME).

The README promises `source .venv/bin/activate; export AIRFLOW_HOME=$(pwd); airflow dags ...`.
So that nothing lands in the repository's own `.mlops/`, AIRFLOW_HOME here is a temporary copy of
the repository's Airflow layout: its airflow.cfg, and links to dags/, plugins/ and config/ (the
real `airflow_local_settings.py`), with one tiny project. The default state folder is then
`<tmp>/.mlops`, exactly as `<repo>/.mlops` is for the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_testing import sqlite_rows, tiny_project

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PROJECT = "plain_tiny"

pytestmark = pytest.mark.timeout(400)


def airflow_home(root: Path) -> Path:
    """A copy of the repository's Airflow layout under `root` (what AIRFLOW_HOME=$(pwd) points at)."""
    home = root / "repo"
    home.mkdir()
    shutil.copy(REPO / "airflow.cfg", home / "airflow.cfg")
    for folder in ("dags", "plugins", "config"):
        (home / folder).symlink_to(REPO / folder)
    (home / "projects").mkdir()
    (home / "projects" / f"{PROJECT}.yaml").write_text(tiny_project(PROJECT))
    return home


def plain_env(home: Path, **extra: str) -> dict[str, str]:
    """A shell that only activated the venv and exported AIRFLOW_HOME: no MLOPS_*, no AIRFLOW__*."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "AIRFLOW_HOME": str(home), **extra}


def airflow(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        ["airflow", *args], env=env or plain_env(home), cwd=home, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"airflow {' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def json_rows(output: str) -> list[dict]:
    """The JSON table an `airflow ... -o json` command prints (log lines before it skipped)."""
    line = next(line for line in reversed(output.splitlines()) if line.startswith(("[{", "[]")))
    return json.loads(line)


def test_plain_airflow_commands_with_only_airflow_home(tmp_path: Path):
    home = airflow_home(tmp_path)
    state = home / ".mlops"

    airflow(home, "db", "migrate")
    assert (state / "airflow" / "airflow.db").is_file()
    assert not (home / "${MLOPS_HOME}").exists()  # the unexpanded variable is not a relative folder
    secret = state / "secrets" / "jwt_secret"
    assert secret.is_file() and secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text()) >= 64

    # The files parse at once; the DB lists DAGs after a parse (the dag-processor, or reserialize).
    local = json_rows(airflow(home, "dags", "list", "--local", "-o", "json"))
    assert {row["dag_id"] for row in local} == {f"{PROJECT}__lifecycle", "toolkit__report"}
    airflow(home, "dags", "reserialize")
    listed = json_rows(airflow(home, "dags", "list", "-o", "json"))
    assert {row["dag_id"] for row in listed} == {f"{PROJECT}__lifecycle", "toolkit__report"}

    # The whole lifecycle runs, and the Python side (MLflow, DVC, BentoML) used the same state folder.
    out = airflow(home, "dags", "test", f"{PROJECT}__lifecycle", timeout=300)
    runs = sqlite_rows(state / "airflow" / "airflow.db", "select state from dag_run where dag_id = ?", f"{PROJECT}__lifecycle")
    assert runs == [("success",)], out[-3000:]
    assert (state / "mlflow" / "mlflow.db").is_file()
    assert (state / "dvc" / "data" / f"{PROJECT}.dvc").is_file()
    assert (state / "airflow" / "logs").is_dir()

    triggered = json_rows(airflow(home, "dags", "trigger", f"{PROJECT}__lifecycle", "-o", "json"))
    assert triggered[0]["dag_id"] == f"{PROJECT}__lifecycle" and triggered[0]["state"] == "queued"
    runs = json_rows(airflow(home, "dags", "list-runs", f"{PROJECT}__lifecycle", "-o", "json"))
    assert {run["state"] for run in runs} == {"success", "queued"}


def test_an_exported_mlops_home_wins(tmp_path: Path):
    home = airflow_home(tmp_path)
    custom = tmp_path / "elsewhere"
    env = plain_env(home, MLOPS_HOME=str(custom))
    airflow(home, "db", "migrate", env=env)
    assert (custom / "airflow" / "airflow.db").is_file()
    assert not (home / ".mlops").exists()
    # What an Airflow process (and so every task it runs) sees: the Python side agrees with airflow.cfg.
    script = (
        "import json, os, airflow.settings as s\n"
        "from airflow.configuration import conf\n"
        "from mlops.settings import Settings\n"
        "print(json.dumps({'db': s.SQL_ALCHEMY_CONN, 'logs': conf.get('logging', 'base_log_folder'),"
        " 'home': str(Settings.from_env().home), 'projects': str(Settings.from_env().projects_dir)}))\n"
    )
    for mlops_home, expected in ((None, home / ".mlops"), (str(custom), custom)):
        shell = plain_env(home) if mlops_home is None else env
        done = subprocess.run([sys.executable, "-c", script], env=shell, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen == {
            "db": f"sqlite:///{expected}/airflow/airflow.db",
            "logs": f"{expected}/airflow/logs",
            "home": str(expected),
            "projects": str(home / "projects"),
        }


def test_plain_defaults_fill_only_what_the_shell_left_unset(tmp_path: Path, monkeypatch):
    from mlops.airflow_env import plain_airflow_defaults

    monkeypatch.chdir(tmp_path)
    env = {"AIRFLOW_HOME": str(tmp_path / "repo"), "MLOPS_HOME": "state", "AIRFLOW__API_AUTH__JWT_SECRET": "mine",
           "MLOPS_AIRFLOW_PORT": "9091", "BENTOML_DO_NOT_TRACK": "false"}
    plain_airflow_defaults(env)
    assert env["MLOPS_HOME"] == str(tmp_path / "state")  # made absolute: airflow.cfg's sqlite URL needs it
    assert env["MLOPS_PROJECTS_DIR"] == str(tmp_path / "repo" / "projects")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "mine" and not (tmp_path / "state" / "secrets").exists()
    assert env["AIRFLOW__API__PORT"] == "9091"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:9091/execution/"
    assert env["BENTOML_DO_NOT_TRACK"] == "false" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    bare = {"AIRFLOW_HOME": str(tmp_path / "repo")}
    plain_airflow_defaults(bare)
    assert bare["MLOPS_HOME"] == str(tmp_path / "repo" / ".mlops") and "AIRFLOW__API__PORT" not in bare
    assert (tmp_path / "repo" / ".mlops" / "secrets" / "jwt_secret").read_text() == bare["AIRFLOW__API_AUTH__JWT_SECRET"]
