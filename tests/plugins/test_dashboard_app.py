"""The toolkit dashboard inside Airflow's real api-server app (in process), behind Airflow's real login.

One migrated Airflow DB holds a project's synced DAG with runs, a waiting task, a pool and the import error
of a broken project YAML; the api-server app is Airflow's own `create_app` with the `mlops` plugin mounted by
Airflow's plugin manager, and logins are SimpleAuthManager's (the password it generates, its /auth/token).
"""

from __future__ import annotations

import contextlib

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VALID = "dash_alpha"
BROKEN = "dash_broken"
VALID_YAML = (
    f"name: {VALID}\nowner: dash-team\ndescription: the dashboard test's project\ndata:\n  num_samples: 256\n"
    "model:\n  family: mlp_classifier\ntraining:\n  epochs: 1\nretries: 0\n"
)
BROKEN_YAML = f"name: {BROKEN}\nowner: dash-team\nmodel:\n  family: mlp_classifier\ntraining:\n  epochs: many\n"
LIFECYCLE = f"{VALID}__lifecycle"
RUNS = ("dash_run_1", "dash_run_2", "dash_run_3")  # oldest first
POOL = "dash_pool"


@pytest.fixture(scope="module")
def airflow_rows(airflow_db, tmp_path_factory):
    """Two project YAMLs (one broken) parsed by the real DAG files and synced: DAGs, runs, a pool, an import error."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dagbag import DBDagBag
    from airflow.models.errors import ParseImportError
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import delete, select

    projects = tmp_path_factory.mktemp("dashboard-projects")
    (projects / f"{VALID}.yaml").write_text(VALID_YAML)
    (projects / f"{BROKEN}.yaml").write_text(BROKEN_YAML)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PROJECTS_DIR", str(projects))
        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=str(REPO / "dags"), bundle_path=REPO / "dags", bundle_name="dags-folder")
        assert LIFECYCLE in bag.dag_ids
        assert any(BROKEN in error for error in bag.import_errors.values()), bag.import_errors
        sync_bag_to_db(bag, "dags-folder", None)
        base = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
        try:
            with create_session() as session:
                dag = DBDagBag().get_latest_version_of_dag(LIFECYCLE, session=session)
                for n, run_id in enumerate(RUNS):
                    when = base + timedelta(hours=n)
                    dag.create_dagrun(
                        run_id=run_id, logical_date=when, data_interval=(when, when), run_after=when,
                        run_type=DagRunType.MANUAL, triggered_by=DagRunTriggeredByType.TEST,
                        state=DagRunState.SUCCESS if n < 2 else DagRunState.RUNNING, session=session,
                    )
                session.flush()
                waiting = session.scalar(select(TaskInstance).where(
                    TaskInstance.dag_id == LIFECYCLE, TaskInstance.run_id == RUNS[-1]).limit(1))
                waiting.state = TaskInstanceState.SCHEDULED
                waiting.scheduled_dttm = datetime.now(timezone.utc)
                Pool.create_or_update_pool(POOL, 3, "dashboard test", False, session=session)
            yield {"projects": projects, "waiting_task": waiting.task_id}
        finally:
            with create_session() as session:
                for dag_id in bag.dag_ids:
                    delete_dag(dag_id, keep_records_in_log=False, session=session)
                session.execute(delete(ParseImportError).where(ParseImportError.bundle_name == "dags-folder"))
                Pool.delete_pool(POOL, session=session)


@pytest.fixture(scope="module")
def api(airflow_rows):
    """Airflow's api-server app as `airflow api-server` builds it (core API, plugins, auth manager, UI)."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PROJECTS_DIR", str(airflow_rows["projects"]))
        with TestClient(create_app("core")) as client:
            yield client
    purge_cached_app()


@pytest.fixture(scope="module")
def token(api, airflow_db):
    """A real login: SimpleAuthManager's generated admin password, exchanged at Airflow's /auth/token."""
    import json

    passwords = json.loads((airflow_db.parent / "simple_auth_manager_passwords.json.generated").read_text())
    answer = api.post("/auth/token", json={"username": "admin", "password": passwords["admin"]})
    assert answer.status_code == 201, answer.text
    return answer.json()["access_token"]


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_plugin_registers_the_app_and_the_toolkit_nav_entry(api, token):
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [a["name"] for a in apps if a["url_prefix"] == "/toolkit"] == ["Toolkit dashboard"]
    plugins = api.get("/api/v2/plugins", headers=_bearer(token)).json()["plugins"]
    views = next(p for p in plugins if p["name"] == "mlops")["external_views"]
    assert views == [{"name": "Toolkit", "href": "toolkit/", "url_route": "toolkit", "destination": "nav",
                      "nav_top_level": True, "icon": None, "icon_dark_mode": None, "category": None}]


@pytest.mark.parametrize("path", ["/toolkit/api/overview", f"/toolkit/api/projects/{VALID}",
                                  "/toolkit/static/dashboard.js", "/toolkit/static/dashboard.css"])
def test_without_a_login_the_api_answers_401(api, path):
    api.cookies.clear()
    answer = api.get(path)
    assert answer.status_code == 401 and answer.json() == {"detail": "Not authenticated"}
    assert api.get(path, headers=_bearer("not-a-jwt")).status_code == 403  # Airflow's answer to a bad token


@pytest.mark.parametrize("path", ["/toolkit/", f"/toolkit/projects/{VALID}", "/toolkit/reports/toolkit",
                                  f"/toolkit/projects/{VALID}?tab=yaml"])
def test_without_a_login_pages_redirect_to_airflows_login_and_back(api, path):
    from urllib.parse import urlencode

    api.cookies.clear()
    for cookies in ({}, {"_token": "expired-or-forged"}):
        answer = api.get(path, cookies=cookies, follow_redirects=False)
        assert answer.status_code == 307
        assert answer.headers["location"] == "/auth/login?" + urlencode({"next": path})


def test_logged_in_pages_and_static_files(api, token):
    for auth in ({"headers": _bearer(token)}, {"cookies": {"_token": token}}):  # API clients, the UI's cookie
        overview = api.get("/toolkit/", **auth)
        assert overview.status_code == 200 and 'id="projects"' in overview.text
        assert 'src="static/dashboard.js"' in overview.text and 'data-page="overview"' in overview.text
        project = api.get(f"/toolkit/projects/{VALID}", **auth)
        assert project.status_code == 200 and f'data-project-page="{VALID}"' in project.text
        assert 'src="../static/dashboard.js"' in project.text and 'id="yaml-errors"' in project.text
        script = api.get("/toolkit/static/dashboard.js", **auth)
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert api.get("/toolkit/static/dashboard.css", **auth).headers["content-type"].startswith("text/css")
    assert api.get("/toolkit/static/..%2Fapp.py", headers=_bearer(token)).status_code == 404
    hostile = api.get('/toolkit/projects/"><img src=x onerror=alert(1)>', headers=_bearer(token))
    assert hostile.status_code == 200 and "<img" not in hostile.text and "&lt;img" in hostile.text


def test_reports_are_served_and_a_missing_one_names_the_command(api, token):
    from mlops.analytics.report_files import project_report_path, toolkit_report_path
    from mlops.settings import get_settings

    settings = get_settings()
    paths = {VALID: project_report_path(settings, VALID), "toolkit": toolkit_report_path(settings)}
    with _set_aside(paths.values()):  # reports other tests of this process wrote into the shared state
        missing = api.get(f"/toolkit/reports/{VALID}", headers=_bearer(token))
        assert missing.status_code == 404 and "mlops report" in missing.json()["detail"]
        assert "mlops report" in api.get("/toolkit/reports/toolkit", headers=_bearer(token)).json()["detail"]
        for name, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"<html><body>report of {name}</body></html>")
            answer = api.get(f"/toolkit/reports/{name}", cookies={"_token": token})
            assert answer.status_code == 200 and f"report of {name}" in answer.text
            assert answer.headers["content-type"].startswith("text/html")


@contextlib.contextmanager
def _set_aside(paths):
    """Each existing file moved aside for the block, put back after (what the block wrote is removed)."""
    moved = [(path, path.with_name(path.name + ".aside")) for path in paths if path.exists()]
    for path, aside in moved:
        path.rename(aside)
    try:
        yield
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
        for path, aside in moved:
            aside.rename(path)

def test_the_airflow_state_reader_against_the_real_db(airflow_rows):
    from mlops_airflow.dashboard.airflow_state import read_airflow_state

    state = read_airflow_state()
    assert state.note is None
    runs = state.dag_runs[LIFECYCLE]
    assert [r.run_id for r in runs] == list(reversed(RUNS))  # newest first
    assert [r.state for r in runs] == ["running", "success", "success"] and runs[0].run_type == "manual"
    assert runs[0].start is None or runs[0].start.tzinfo is not None
    assert state.paused[LIFECYCLE] is False  # the factory's DAGs start active
    assert {"name": POOL, "slots": 3, "running": 0, "queued": 0, "open": 3} in state.pools
    waiting = [w for w in state.waiting if w["dag_id"] == LIFECYCLE]
    assert [w["task_id"] for w in waiting] == [airflow_rows["waiting_task"]] and waiting[0]["waiting_for"]
    errors = [e for e in state.import_errors if e["file"].endswith("project_errors.py")]
    assert len(errors) == 1 and f"{BROKEN}.yaml" in errors[0]["message"] and errors[0]["timestamp"]
    assert read_airflow_state(runs_per_dag=1).dag_runs[LIFECYCLE][0].run_id == RUNS[-1]


def test_the_overview_api_answers_the_spec(api, token):
    answer = api.get("/toolkit/api/overview", headers=_bearer(token))
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert {"generated", "seconds", "machine", "links", "projects", "notes"} <= set(data)
    assert {"chip", "memory_gb", "device", "thermal", "pools"} <= set(data["machine"])
    assert POOL in {p["name"] for p in data["machine"]["pools"]}
    projects = {p["name"]: p for p in data["projects"]}
    assert {VALID, BROKEN} <= set(projects)
    alpha = projects[VALID]
    assert {"lifecycle", "paused", "versions", "best_technique", "serving", "monitoring", "queue", "links",
            "valid", "errors", "notes"} <= set(alpha)
    assert alpha["lifecycle"]["run_id"] == RUNS[-1] and alpha["lifecycle"]["state"] == "running"
    assert alpha["queue"]["waiting"] == 1 and alpha["links"]["page"] == f"projects/{VALID}"
    assert projects[BROKEN]["valid"] is False and projects[BROKEN]["errors"]


def test_the_project_api_and_its_yaml_errors(api, token):
    alpha = api.get(f"/toolkit/api/projects/{VALID}", headers=_bearer(token))
    assert alpha.status_code == 200, alpha.text
    data = alpha.json()
    assert [r["run_id"] for r in data["lifecycle_runs"]] == list(reversed(RUNS))
    assert data["lifecycle_runs"][0]["url"] == f"/dags/{LIFECYCLE}/runs/{RUNS[-1]}"
    assert data["yaml"]["valid"] is True and data["yaml"]["text"] == VALID_YAML
    broken = api.get(f"/toolkit/api/projects/{BROKEN}", cookies={"_token": token}).json()
    assert broken["yaml"]["valid"] is False and broken["yaml"]["text"] == BROKEN_YAML
    assert any(e["line"] == 6 and "epochs" in (e["field"] or "") for e in broken["yaml"]["errors"]), broken["yaml"]


def test_an_unknown_project_is_404_with_a_suggestion(api, token):
    answer = api.get("/toolkit/api/projects/dash_alpah", headers=_bearer(token))
    assert answer.status_code == 404
    assert answer.json() == {"detail": f"no project 'dash_alpah' (did you mean '{VALID}'?)",
                             "suggestions": answer.json()["suggestions"]}
    assert answer.json()["suggestions"][0] == VALID


def test_a_dashboard_stuck_on_its_reads_never_holds_airflows_own_routes(api, token, monkeypatch):
    """More dashboard tabs than the dashboard has threads, each waiting on a read that does not return:
    Airflow's own API (the UI's data) still answers, and the tabs get their answers once the read does."""
    import threading

    from mlops_airflow.dashboard import app as dashboard

    gate, waiting = threading.Event(), threading.Semaphore(0)

    def stuck_airflow_read():
        waiting.release()
        assert gate.wait(60), "the test never opened the gate"
        from mlops_airflow.dashboard.airflow_state import read_airflow_state

        return read_airflow_state()

    monkeypatch.setattr(dashboard, "_APP", dashboard.create_app(read_airflow=stuck_airflow_read))
    answers: list[int] = []
    tabs = [threading.Thread(target=lambda path=path: answers.append(api.get(path, headers=_bearer(token)).status_code))
            for path in ("/toolkit/api/overview", f"/toolkit/api/projects/{VALID}", "/toolkit/api/overview")]
    for tab in tabs:
        tab.start()
    assert waiting.acquire(timeout=60)  # a dashboard read is under way and stuck
    for path in ("/api/v2/version", "/api/v2/dags", "/api/v2/monitor/health"):
        assert api.get(path, headers=_bearer(token)).status_code == 200, path
    assert not gate.is_set() and answers == []  # Airflow answered while every tab still waited
    gate.set()
    for tab in tabs:
        tab.join(60)
    assert sorted(answers) == [200, 200, 200]
