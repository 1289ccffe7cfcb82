"""`mlops up` starts real Airflow and MLflow servers on 127.0.0.1 behind auth; `mlops down` stops them all."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import psutil
from mlops_testing import free_port, wait_for

from mlops import services
from mlops.settings import Settings


def http(url: str, data: dict | None = None, token: str | None = None, basic: tuple[str, str] | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if basic:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(basic).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
            return response.status, json.loads(body) if body.startswith("{") else body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket the process or its children listen on."""
    sockets = set()
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            sockets |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return sockets


def test_up_serves_behind_auth_on_loopback_and_down_stops_everything(tmp_path):
    settings = Settings.from_env(
        {"MLOPS_HOME": str(tmp_path / "state"), "MLOPS_MLFLOW_PORT": str(free_port()),
         "MLOPS_AIRFLOW_PORT": str(free_port()), "MLOPS_GATEWAY_PORT": str(free_port()),
         "MLOPS_RAY_PORT": str(free_port()), "MLOPS_SERVING_MEMORY_GB": "2",
         "MLOPS_EVIDENTLY_PORT": str(free_port())}
    )
    try:
        pids = services.up(settings)
        assert set(pids) == {
            "mlflow", "api-server", "ray-head", "gateway", "evidently-ui", "scheduler", "dag-processor", "triggerer"
        }
        # Each server listens on its configured port, on loopback only; the other services listen nowhere.
        # (Ray 2.60's gRPC servers bind every interface: token auth guards them; not checked here.)
        ports = {"mlflow": settings.mlflow_port, "api-server": settings.airflow_port,
                 "gateway": settings.gateway_port, "evidently-ui": settings.evidently_port}
        for name, pid in pids.items():
            if name == "ray-head":
                continue
            sockets = listening_sockets(pid)
            if name in ports:
                assert {ip for ip, _ in sockets} == {"127.0.0.1"} and ("127.0.0.1", ports[name]) in sockets, (name, sockets)
            else:
                assert sockets == set(), (name, sockets)
        ray_session = services.session_members(pids["ray-head"])
        assert len(ray_session) >= 2  # gcs_server, raylet, ...

        api = f"http://127.0.0.1:{settings.airflow_port}"
        assert http(f"{api}/api/v2/dags")[0] == 401  # the API requires a login
        passwords = json.loads((settings.home / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        status, body = http(f"{api}/auth/token", {"username": "admin", "password": passwords["admin"]})
        assert status == 201, body
        assert http(f"{api}/api/v2/dags", token=body["access_token"])[0] == 200

        gateway = f"http://127.0.0.1:{settings.gateway_port}"
        assert http(f"{gateway}/v1/models")[0] == 401  # the serving API requires a key too
        key = (settings.home / "secrets" / "api_keys").read_text().split()[0]
        request = urllib.request.Request(f"{gateway}/v1/models", headers={"X-API-Key": key})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

        # Every UI asks for a login: MLflow's basic-auth app and Evidently's UI behind ours.
        secrets = settings.home / "secrets"
        mlflow_login = ("admin", (secrets / "mlflow_admin_password").read_text().strip())
        search = f"http://127.0.0.1:{settings.mlflow_port}/api/2.0/mlflow/experiments/search?max_results=5"
        assert http(search)[0] == 401
        assert http(search, basic=mlflow_login)[0] == 200
        evidently = f"http://127.0.0.1:{settings.evidently_port}/api/projects"
        assert http(evidently)[0] == 401
        assert http(evidently, basic=("admin", (secrets / "evidently_ui_password").read_text().strip()))[0] == 200
        for name in ("api_keys", "mlflow_admin_password", "evidently_ui_password", "ray_token"):
            assert (secrets / name).stat().st_mode & 0o077 == 0, name

        # Tracking goes through the real MLflow server (the client finds the login in secrets/).
        from mlops.config import parse_project_text
        from mlops.data.project_data import ensure_project_data
        from mlops.training.trainer import train_project

        import dataclasses

        tracked = dataclasses.replace(settings, tracking_uri=f"http://127.0.0.1:{settings.mlflow_port}")
        config = parse_project_text("name: via_server\ndata:\n  num_samples: 256\nmodel:\n  family: mlp_classifier\ntraining:\n  epochs: 1\n", "x.yaml")
        data = ensure_project_data(tracked, config.name, "mlp_classifier", 256, 0, {})
        result = train_project(tracked, config, data["path"], data["version"])
        status, run = http(f"{tracked.tracking_uri}/api/2.0/mlflow/runs/get?run_id={result['run_id']}", basic=mlflow_login)
        assert status == 200 and run["run"]["data"]["metrics"]

        # The daily toolkit report runs by itself on the new scheduler (its last interval, catchup off),
        # tracking into the server; the scheduler's refresher keeps the pool-usage snapshot it reads.
        from mlops.analytics.report_files import toolkit_report_path
        from mlops.resources.pool_usage import snapshot_path

        report = toolkit_report_path(settings)
        wait_for(report.is_file, 240, f"{report} written by the toolkit__report DAG", interval=2)
        assert snapshot_path(settings).is_file()
        toolkit = f"{tracked.tracking_uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=toolkit"
        wait_for(lambda: http(toolkit, basic=mlflow_login)[0] == 200, 60, "the report's run logged to MLflow")
        assert '<section data-plot="pool-usage"' in report.read_text()
    finally:
        stopped = services.down(settings)
    assert set(stopped) == set(pids)
    for pid in [*pids.values(), *ray_session]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(pid is None for pid in services.status(settings).values())
