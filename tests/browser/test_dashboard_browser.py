"""The Toolkit dashboard as a person meets it: a real browser, logged in through Airflow's own form.

Headless Chromium (tests/mlops_testing.py: launch_browser, the @sparticuz/chromium build driven by
Playwright's Python package) against one shared stack: an MLflow server with the basic-auth app `mlops up`
runs (seeded history, so projects have registered versions), Airflow's api-server (which serves the
dashboard at /toolkit/ and its nav entry at /plugin/toolkit) and the dag-processor (which turns a
broken YAML into an import error). The first test opens the dashboard from Airflow's navigation, sees
every project, opens one and follows its link into MLflow's UI; the second sees the broken YAML's
located error in Airflow's import-error view and on the dashboard's page for that project. Screenshots
of every step go to artifacts_dir("browser") (<repo>/.mlops/test-artifacts/browser/ or $MLOPS_TEST_ARTIFACTS).
Without a browser the tests skip saying what to install; on CI (CI=true) they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_testing import airflow_processes, artifacts_dir, free_port, launch_browser, sqlite_rows, tiny_project, wait_for

from mlops.settings import REPO_ROOT

SHIPPED = ("quantized_optimization", "lora_finetuning", "cpu_compression")
BROKEN = "broken_project"
# The dag-processor's message for the misspelled field (line 7, column 3 of the YAML tiny_project writes).
LOCATED = "broken_project.yaml:7:3: training.epochz: unknown field (did you mean 'epochs'?)"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (skips, or fails on CI, before any server starts without one)."""
    with launch_browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def stack(browser, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """MLflow (basic auth, seeded), Airflow's api-server and dag-processor on free loopback ports; stopped by PID."""
    from mlops import services
    from mlops.settings import Settings
    from mlops.tracking.client import MLFLOW_USER

    root = tmp_path_factory.mktemp("dashboard-browser")
    home, projects, logs = root / "state", root / "projects", root / "logs"
    projects.mkdir()
    logs.mkdir()
    for name in SHIPPED:
        shutil.copy(REPO_ROOT / "projects" / f"{name}.yaml", projects)
    (projects / f"{BROKEN}.yaml").write_text(tiny_project(BROKEN).replace("epochs: 1", "epochz: 1"))
    mlflow_port, airflow_port = free_port(), free_port()
    raw = {
        "MLOPS_HOME": str(home), "MLOPS_PROJECTS_DIR": str(projects),
        "MLOPS_MLFLOW_PORT": str(mlflow_port), "MLOPS_AIRFLOW_PORT": str(airflow_port),
        "MLOPS_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        # nothing listens there: the dashboard says "gateway down" instead of reaching a developer's own
        "MLOPS_GATEWAY_PORT": str(free_port()), "MLOPS_EVIDENTLY_PORT": str(free_port()),
    }
    settings = Settings.from_env(raw)
    env = {**services.service_environment(settings), **raw, "MLOPS_REPORT_SCHEDULE": "none",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: nothing here submits jobs
    argv = {service.name: service.argv for service in services.platform_services(settings)}
    health = {service.name: service.health_url for service in services.platform_services(settings)}

    def healthy(name: str, proc: subprocess.Popen) -> None:
        assert services.wait_healthy(health[name], timeout=120, pid=proc.pid), (
            f"{name} did not answer at {health[name]}: {(logs / f'{name}.log').read_text()[-3000:]}")

    airflow_cli = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.Popen([airflow_cli, "db", "migrate"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with contextlib.ExitStack() as stop_later:
        stop_later.callback(lambda: migrate.poll() is None and migrate.kill())
        seed_mlflow(home / "mlflow")  # while Airflow's DB migrates: history in the store MLflow's server opens
        mlflow = stop_later.enter_context(airflow_processes(env, logs, {"mlflow": argv["mlflow"]}))
        assert migrate.wait(timeout=120) == 0, "airflow db migrate failed"
        airflow = stop_later.enter_context(
            airflow_processes(env, logs, {name: argv[name] for name in ("api-server", "dag-processor")}))
        healthy("mlflow", mlflow["mlflow"])
        healthy("api-server", airflow["api-server"])
        passwords = home / "airflow" / "simple_auth_manager_passwords.json.generated"
        yield {
            "airflow": f"http://127.0.0.1:{airflow_port}", "mlflow": f"http://127.0.0.1:{mlflow_port}",
            "password": json.loads(passwords.read_text())["admin"],
            "mlflow_login": {"username": MLFLOW_USER, "password": env["MLFLOW_TRACKING_PASSWORD"]},
            "db": home / "airflow" / "airflow.db", "projects": projects, "logs": logs,
        }


def seed_mlflow(mlflow_dir: Path) -> None:
    """Ten training runs per shipped project, one registered version each (mlops.analytics.seeding),
    written straight into the SQLite store the server opens (faster than over HTTP)."""
    from mlflow import MlflowClient

    from mlops.analytics.seeding import seed_history

    mlflow_dir.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    client = MlflowClient(store, store)  # the registry too: never a registry URI an earlier test set
    seed_history(client, list(SHIPPED), 10, artifact_root=(mlflow_dir / "artifacts").as_uri())


@pytest.fixture
def page(browser, stack, request) -> Iterator[Any]:
    """A fresh browser context (MLflow's basic-auth login offered only to MLflow's origin), 1400x900."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 900},
        http_credentials={**stack["mlflow_login"], "origin": stack["mlflow"]},
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
        if getattr(request.node, "browser_call_failed", False):  # set by conftest's report hook
            for i, opened in enumerate(context.pages):
                shot(opened, f"FAILED-{request.node.name}-{i}")
    finally:
        context.close()


def shot(page: Any, name: str, settle: bool = False) -> Path:
    """A full-page screenshot for a person to look at: artifacts_dir("browser")/<name>.png. `settle`: first let
    the page's requests finish, at most 5 s (Airflow's pages draw skeletons until their data arrives)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if settle:
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_load_state("networkidle", timeout=5000)
    path = artifacts_dir("browser") / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")  # finished, not mid-transition
    return path


def log_in(page: Any, stack: dict[str, Any]) -> None:
    """Airflow's own login form (SimpleAuthManager, user admin, the generated password), then its home page."""
    page.goto(stack["airflow"] + "/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(stack["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.get_by_role("link", name="Dags", exact=True).first.wait_for()


def open_toolkit(page: Any) -> Any:
    """Click Airflow's "Toolkit" nav entry (top level, or inside the "Plugins" menu Airflow groups several
    plugin views in) and return the frame the dashboard loads in (Airflow shows external views in an iframe)."""
    entry = page.get_by_role("link", name="Toolkit", exact=True)
    plugins = page.get_by_role("button", name="Plugins", exact=True)
    entry.or_(plugins).first.wait_for()  # the nav lists plugin views once Airflow's UI has fetched them
    if not entry.count():
        plugins.click()
        entry = page.get_by_role("menuitem", name="Toolkit", exact=True)
    entry.first.click()
    page.wait_for_url("**/plugin/toolkit**")
    frame = page.locator('iframe[title="Toolkit"]')  # Airflow titles the iframe with the view's name
    frame.element_handle().content_frame().wait_for_url("**/toolkit/")  # the dashboard, from the api-server
    return frame.content_frame


def test_dashboard_from_airflow_nav_to_a_project_and_into_mlflow(page, stack):
    log_in(page, stack)
    shot(page, "01-airflow-home", settle=True)

    dashboard = open_toolkit(page)
    dashboard.locator("body[data-state=ready][data-page=overview]").wait_for()
    shown = dashboard.locator("a.project-link").all_inner_texts()
    assert sorted(shown) == sorted((*SHIPPED, BROKEN)), shown
    shot(page, "02-toolkit-overview")

    project = SHIPPED[0]
    dashboard.locator("a.project-link", has_text=project).first.click()
    dashboard.locator("body[data-state=ready][data-page=project]").wait_for()
    # the newest registered version's link into MLflow's model registry (seeded: one version per project)
    mlflow_link = dashboard.locator("#versions-table a.mlflow-link").first
    mlflow_link.scroll_into_view_if_needed()
    shot(page, "03-toolkit-project")

    href = mlflow_link.get_attribute("href")
    assert href and href.startswith(stack["mlflow"] + "/"), href
    if mlflow_link.get_attribute("target") == "_blank":
        with page.context.expect_page() as opened:
            mlflow_link.click()
        mlflow = opened.value
    else:
        mlflow_link.click()
        mlflow = page
    mlflow.wait_for_url(stack["mlflow"] + "/**")
    # MLflow's own UI (behind its basic-auth login) drew the version of the project's registered model
    assert href.endswith(f"/#/models/{project}/versions/1"), href
    mlflow.get_by_role("heading", name="Version 1").wait_for()
    mlflow.get_by_role("link", name=project).first.wait_for()
    shot(mlflow, "04-mlflow")

    # Airflow links leave the iframe for Airflow's own page of the project's DAG
    dashboard.locator("#projects a.dag-link").first.click()
    page.wait_for_url(f"**/dags/{project}__lifecycle**")
    page.get_by_text(f"{project}__lifecycle").first.wait_for()
    shot(page, "05-airflow-dag", settle=True)


def test_broken_yaml_located_in_airflow_import_errors_and_on_its_project_page(page, stack):
    wait_for(lambda: sqlite_rows(stack["db"], "select stacktrace from import_error"), 90,
             "the dag-processor to record the broken YAML's import error", interval=0.5)
    log_in(page, stack)
    page.get_by_role("link", name="Dags", exact=True).first.click()
    page.wait_for_url("**/dags")
    # The import-error badge (and the modal it owns) re-mounts when the DAG list arrives: click it after that.
    page.get_by_role("link", name=f"{SHIPPED[0]}__lifecycle").first.wait_for()
    badge = page.get_by_role("button", name="Dag Import Error")
    dialog = page.get_by_role("dialog")
    located = dialog.get_by_text(LOCATED).first

    def unfolded() -> bool:
        """Open the modal and unfold the file's traceback; again if a refresh of the page closed it."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        if not located.is_visible():
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_load_state("networkidle", timeout=5000)
                if not dialog.is_visible():
                    badge.click(timeout=5000)
                dialog.get_by_text("project_errors.py").first.click(timeout=5000)
                located.wait_for(timeout=3000)
        return located.is_visible()

    wait_for(unfolded, 60, "Airflow's import-error view to show the broken YAML's located message", interval=0.2)
    shot(page, "06-airflow-import-errors")
    page.keyboard.press("Escape")

    dashboard = open_toolkit(page)
    dashboard.locator("a.project-link", has_text=BROKEN).first.click()
    dashboard.locator("body[data-state=ready][data-page=project]").wait_for()
    # the same location the dag-processor reported: file, line 7, column 3, the field, the suggestion
    error = dashboard.locator('#yaml-errors li.yaml-error[data-line="7"][data-column="3"][data-field="training.epochz"]')
    error.scroll_into_view_if_needed()
    text = error.inner_text()
    assert "broken_project.yaml:7:3" in text and "did you mean 'epochs'" in text, text
    dashboard.locator("#yaml-text #L7.error-line").wait_for()  # and the YAML's line 7 is marked
    shot(page, "07-toolkit-broken-project")


def test_without_a_browser_the_tests_skip_saying_what_to_install_and_fail_on_ci(monkeypatch):
    import mlops_testing

    def no_npm(log=None):
        raise RuntimeError("browser install: npm ci failed (1): npm ERR! network request failed")

    monkeypatch.delenv("MLOPS_TEST_CHROMIUM", raising=False)
    monkeypatch.setattr(mlops_testing, "browser_install", no_npm)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        mlops_testing.chromium_executable()
    assert "npm ci failed" in str(skipped.value) and "uv sync --group dev" in str(skipped.value)

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        mlops_testing.chromium_executable()
    assert "npm ci failed" in str(failed.value) and "CI=true" in str(failed.value)
