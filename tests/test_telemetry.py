"""No phoning home by default: every process gets each library's off switch, and each library reads it.

The checks call each library's own "is telemetry on" function in a fresh interpreter whose environment
holds only PATH, a throwaway HOME and the switches under test, with outgoing connections refused, so a
check can neither pass because of the test runner's environment (MLflow turns itself off under
pytest and CI) nor reach the network when it finds telemetry on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlops import telemetry
from mlops.airflow_env import airflow_environment
from mlops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SWITCHES = telemetry.TELEMETRY_OFF

# Prints {"enabled": {library: bool}, "attempts": [...]}; argv[1] == "airflow": import Airflow first,
# as any Airflow process (and the task it runs) does.
PROBE = textwrap.dedent(
    """
    import json, socket, sys
    attempts = []
    def refuse(self, address, *args, **kwargs):
        attempts.append(repr(address))
        raise OSError("network disabled in this test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    if sys.argv[1:] == ["airflow"]:
        import airflow.settings
    enabled = {}
    from ray._common.usage import usage_lib
    enabled["ray"] = usage_lib.usage_stats_enabled()
    from bentoml._internal.utils.analytics.usage_stats import do_not_track
    enabled["bentoml"] = not do_not_track()
    import mlflow
    from mlflow.telemetry import get_telemetry_client
    from mlflow.telemetry.utils import is_telemetry_disabled
    enabled["mlflow"] = not is_telemetry_disabled()
    enabled["mlflow_client"] = get_telemetry_client() is not None
    from dvc import analytics
    enabled["dvc"] = analytics.is_enabled()
    from evidently.telemetry import event_logger
    enabled["evidently"] = event_logger.is_enabled()
    from evidently.ui.service.components.telemetry import TelemetryComponent
    enabled["evidently_ui"] = TelemetryComponent().get_event_logger().func.__self__.enabled
    print(json.dumps({"enabled": enabled, "attempts": attempts}))
    """
)
LIBRARIES = {"ray", "bentoml", "mlflow", "mlflow_client", "dvc", "evidently", "evidently_ui"}


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    # DVC_ANALYTICS_ENDPOINT: should a report be sent after all, it goes to a closed loopback port.
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "DVC_ANALYTICS_ENDPOINT": "http://127.0.0.1:9", **extra}


def probe(env: dict[str, str], cwd: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def no_switches(monkeypatch):
    """This process's environment without any switch (conftest gave it the platform's)."""
    for name in (*SWITCHES, telemetry.OPT_IN):
        monkeypatch.delenv(name, raising=False)


def test_airflow_and_every_service_get_each_switch(tmp_path: Path, no_switches, monkeypatch):
    from mlops.services import platform_services, service_environment

    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path / "state")})
    assert SWITCHES.items() <= airflow_environment(settings, base={"PATH": "/usr/bin"}).items()
    env = service_environment(settings)  # what `mlops up` starts each service with
    services = platform_services(settings)
    assert {s.name for s in services} >= {"mlflow", "api-server", "scheduler", "dag-processor", "triggerer",
                                           "ray-head", "gateway", "evidently-ui"}
    for service in services:
        missing = {k: v for k, v in SWITCHES.items() if env.get(k) != v}
        assert not missing, f"{service.name} would start without {missing}"
    assert "--disable-usage-stats" in next(s for s in services if s.name == "ray-head").argv

    # Defaults only: a value the user exported wins; MLOPS_TELEMETRY=on sets none of them.
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "false")
    assert service_environment(settings)["BENTOML_DO_NOT_TRACK"] == "false"
    opted_in = airflow_environment(settings, base={"PATH": "/usr/bin", telemetry.OPT_IN: "on"})
    assert not set(SWITCHES) & set(opted_in)


def test_each_library_honours_its_switch(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    # Control: without the switches every check reports telemetry on (so the check is not vacuous).
    on = probe(bare_env(home), tmp_path)["enabled"]
    assert on == dict.fromkeys(LIBRARIES, True), on
    # The switches exactly as the platform sets them.
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path / "state")})
    platform = airflow_environment(settings, base={})
    off = probe(bare_env(home, **{k: platform[k] for k in SWITCHES}), tmp_path)
    assert off == {"enabled": dict.fromkeys(LIBRARIES, False), "attempts": []}


def test_a_plain_airflow_process_has_telemetry_off(tmp_path: Path):
    """`airflow ...` with only AIRFLOW_HOME (and here MLOPS_HOME) set: airflow_local_settings.py switches it off."""
    airflow_home = tmp_path / "repo"
    airflow_home.mkdir()
    shutil.copy(REPO / "airflow.cfg", airflow_home / "airflow.cfg")
    (airflow_home / "config").symlink_to(REPO / "config")
    home = tmp_path / "home"
    home.mkdir()
    env = bare_env(home, AIRFLOW_HOME=str(airflow_home), MLOPS_HOME=str(tmp_path / "state"))
    off = probe(env, tmp_path, "airflow")
    assert off == {"enabled": dict.fromkeys(LIBRARIES, False), "attempts": []}


def test_the_dvc_workspace_has_analytics_off(tmp_path: Path, no_switches, monkeypatch):
    from mlops.data.dvc_workspace import open_workspace, workspace_lock

    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path / "state")})
    with workspace_lock(settings.dvc_workspace):
        open_workspace(settings)
    home = tmp_path / "home"
    home.mkdir()
    env = bare_env(home)  # no DVC_NO_ANALYTICS: the workspace's own config must do it
    for key in ("core.analytics", "core.check_update"):
        done = subprocess.run(["dvc", "config", key], env=env, cwd=settings.dvc_workspace, capture_output=True, text=True)
        assert (done.returncode, done.stdout.strip().lower()) == (0, "false"), done.stderr
    checks = (
        "from dvc import analytics; from dvc.updater import Updater; import tempfile; "
        "print(analytics.is_enabled(), Updater(tempfile.mkdtemp()).is_enabled())"
    )
    done = subprocess.run([sys.executable, "-c", checks], env=env, cwd=settings.dvc_workspace, capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr[-3000:]

    # Opted in: the keys go, DVC's defaults (or the user's global config) decide again.
    monkeypatch.setenv(telemetry.OPT_IN, "on")
    with workspace_lock(settings.dvc_workspace):
        repo = open_workspace(settings)
    config = (settings.dvc_workspace / ".dvc" / "config").read_text()
    assert "analytics" not in config and "check_update" not in config
    assert repo.config["core"]["analytics"] is True  # DVC's default
