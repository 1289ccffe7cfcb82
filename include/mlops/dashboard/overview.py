"""The dashboard's two pages as JSON-ready dicts: every project at a glance, and one project in full.

Reads run in parallel on a thread pool: the project YAMLs, MLflow, the gateway, the Evidently workspace
and the machine at once, then each project's MLflow reads (`tracking`) side by side. Each read's failure
becomes a note where its part would be; the builders never raise, except `UnknownProject`.
"""

from __future__ import annotations

import difflib
import functools
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops.dashboard import links, tracking
from mlops.dashboard.airflow_state import DEPLOY, LIFECYCLE, MONITOR, project_runs
from mlops.dashboard.entry import ProjectSources, project_entry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.dashboard.airflow_state import AirflowState
    from mlops.settings import Settings

#: Reads in flight at once. MLflow's server (`mlops up`: one worker process) answers them one CPU at a time,
#: so more only queue there; two overlap one request on the server with parsing the previous answer here.
#: bench/dashboard.py (9 x 200 x 20, 2 cores): 0.32 s median with 2, the same as the reads one after another.
WORKERS = 2
DEADLINE_S = 10.0  # the longest a page waits for its reads (MLflow's own client retries for longer)


class UnknownProject(LookupError):
    """No YAML and no MLflow experiment has this name; `suggestions` are the closest names there are."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name, self.suggestions = name, suggestions
        hint = f" (did you mean {suggestions[0]!r}?)" if suggestions else ""
        super().__init__(f"no project {name!r}{hint}")


def default_client(settings: Settings) -> MlflowClient:
    """An MlflowClient on the platform's store, logged in to the server `mlops up` runs (one per store and
    process: the client keeps its HTTP session)."""
    from mlops import telemetry
    from mlops.tracking.client import mlflow_credentials

    telemetry.apply(os.environ)  # before mlflow's import, as `mlops.tracking.client.configure` does
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if settings.tracking_uri.startswith("http") and "MLFLOW_TRACKING_USERNAME" not in os.environ:
        os.environ.update(mlflow_credentials(settings))
    return _client(settings.tracking_uri)


@functools.lru_cache(maxsize=4)
def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri, tracking_uri)


class _Reads:
    """A page's reads on one pool, each turned into (value, or its default plus a note)."""

    def __init__(self, airflow: AirflowState):
        self.started = time.perf_counter()
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="dashboard")
        self.deadline = time.monotonic() + DEADLINE_S
        self.notes: list[str] = [airflow.note] if airflow.note else []  # the page's notes, Airflow's first

    def submit(self, fn: Any, *args: Any) -> Future:
        return self.pool.submit(fn, *args)

    def result(self, future: Future | None, what: str, default: Any = None, notes: list[str] | None = None) -> Any:
        """The read's value; else `default`, and a note (in `notes`, else the page's) saying why."""
        if future is None:
            return default
        notes = self.notes if notes is None else notes
        try:
            return future.result(timeout=max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            notes.append(f"{what}: no answer within {DEADLINE_S:.0f} s")
        except Exception as exc:  # noqa: BLE001 - every failed source is a note, never an error page
            notes.append(f"{what}: {type(exc).__name__}: {_first_line(exc)}")
        return default

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)  # a hung read must not hold the page


def _experiments(settings: Settings, client: MlflowClient | None) -> tuple[MlflowClient, list]:
    """The client, once MLflow answers, and every experiment (one search)."""
    from mlops.tracking.client import ensure_reachable

    ensure_reachable(settings.tracking_uri, timeout=1.0)  # a dead server: one short probe, not MLflow's retries
    client = client or default_client(settings)
    return client, list(client.search_experiments(max_results=1000))


def _common_reads(reads: _Reads, settings: Settings, client: MlflowClient | None, airflow: AirflowState) -> dict:
    """Start the reads every page needs; wait for the YAMLs and MLflow's experiments (names depend on them)."""
    from mlops.dashboard.machine import machine_id, machine_section
    from mlops.dashboard.projects import read_projects
    from mlops.dashboard.serving import read_gateway

    futures = {
        "gateway": reads.submit(read_gateway, settings),
        "evidently": reads.submit(links.evidently_projects, settings),
        "machine": reads.submit(machine_section, settings, airflow),
        "here": reads.submit(machine_id),
        "files": reads.submit(read_projects, settings),
        "mlflow": reads.submit(_experiments, settings, client),
    }
    files, file_notes = reads.result(futures["files"], "project YAMLs", ({}, []))
    reads.notes.extend(file_notes)
    client, listed = reads.result(futures["mlflow"], f"MLflow at {settings.tracking_uri}", (None, []))
    experiments = tracking.project_experiments(listed, set(files))
    return {"futures": futures, "files": files, "client": client, "experiments": experiments}


def _sources(reads: _Reads, settings: Settings, common: dict, airflow: AirflowState) -> ProjectSources:
    futures = common["futures"]
    return ProjectSources(
        settings=settings, airflow=airflow, mlflow_base=links.mlflow_base(settings),
        gateway=reads.result(futures["gateway"], "gateway"),
        evidently=reads.result(futures["evidently"], "Evidently workspace", {}),
        here=reads.result(futures["here"], "machine id"),
        mlflow_ok=common["client"] is not None,
    )


def build_overview(settings: Settings, airflow: AirflowState, client: MlflowClient | None = None) -> dict[str, Any]:
    """Every project (a YAML, valid or not, or a project's MLflow experiment) at a glance, and the machine."""
    reads = _Reads(airflow)
    notes = reads.notes
    try:
        common = _common_reads(reads, settings, client, airflow)
        files, experiments, mlflow = common["files"], common["experiments"], common["client"]
        names = sorted(set(files) | set(experiments))
        per_project = {}
        if mlflow is not None:
            for name in names:
                experiment = experiments.get(name)
                per_project[name] = (
                    reads.submit(tracking.versions_with_runs, mlflow, name, experiment),
                    reads.submit(tracking.latest_monitoring, mlflow, experiment.experiment_id) if experiment else None,
                )
        sources = _sources(reads, settings, common, airflow)
        if sources.gateway is not None and sources.gateway.note:
            notes.append(sources.gateway.note)
        machine = reads.result(common["futures"]["machine"], "machine")
        projects = []
        for name in names:
            project_notes: list[str] = []
            state = None
            if name in per_project:
                found = reads.result(per_project[name][0], "MLflow versions", None, project_notes)
                latest = reads.result(per_project[name][1], "MLflow monitoring runs", [], project_notes)
                if found is not None:
                    state = tracking.ProjectTracking(experiments.get(name), *found, latest)
            entry, _ = project_entry(sources, name, files.get(name), experiments.get(name), state, project_notes)
            projects.append(entry)
    finally:
        reads.close()
    return {
        "generated": datetime.now(UTC).isoformat(),
        "seconds": round(time.perf_counter() - reads.started, 4),
        "machine": machine,
        "links": {"airflow": "/", "mlflow": sources.mlflow_base, "evidently": links.evidently_base(settings),
                  "toolkit_report": links.report_status(settings, None)["url"]},
        "projects": projects,
        "import_errors": list(airflow.import_errors),
        "notes": notes,
    }


def build_project(
    settings: Settings, name: str, airflow: AirflowState, client: MlflowClient | None = None
) -> dict[str, Any]:
    """One project in full: its overview entry, training history, every version, its DAG runs, deployments,
    monitoring history, report and YAML. `UnknownProject` when no YAML or experiment has that name."""
    from mlops.dashboard.entry import monitoring_history, run_rows, yaml_of
    from mlops.dashboard.serving import deployments

    reads = _Reads(airflow)
    notes = reads.notes
    try:
        common = _common_reads(reads, settings, client, airflow)
        files, experiments, mlflow = common["files"], common["experiments"], common["client"]
        known = sorted(set(files) | set(experiments))
        if name not in known:
            raise UnknownProject(name, difflib.get_close_matches(name, known, n=3, cutoff=0.6))
        experiment = experiments.get(name)
        state = None
        if mlflow is not None:
            versions = reads.submit(tracking.model_versions, mlflow, name)
            history = reads.submit(tracking.experiment_history, mlflow, experiment)
            state = tracking.page_state(experiment, reads.result(versions, "MLflow versions", []),
                                        reads.result(history, "MLflow runs", []))
        sources = _sources(reads, settings, common, airflow)
        if sources.gateway is not None and sources.gateway.note:
            notes.append(sources.gateway.note)
    finally:
        reads.close()
    page, all_versions = project_entry(sources, name, files.get(name), experiment, state, [])
    page["notes"] = notes + page["notes"]
    page.update(
        generated=datetime.now(UTC).isoformat(),
        runs=run_rows(sources, experiment, state),
        all_versions=all_versions,
        lifecycle_runs=project_runs(airflow, name, LIFECYCLE),
        deploy_runs=project_runs(airflow, name, DEPLOY),
        monitor_runs=project_runs(airflow, name, MONITOR),
        deployments=deployments(sources.gateway, name) if sources.gateway is not None else [],
        monitoring_history=monitoring_history(sources, experiment, state),
        report=links.report_status(settings, name),
        yaml=yaml_of(settings, name, files.get(name)),
        seconds=round(time.perf_counter() - reads.started, 4),
    )
    return page


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


__all__ = ["UnknownProject", "build_overview", "build_project", "default_client"]
