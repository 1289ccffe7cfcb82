"""Cost of the toolkit dashboard's overview (`mlops.dashboard.build_overview`) on a real MLflow server:
PROJECTS x RUNS training runs x VERSIONS registered versions (goal: 9 x 200 x 20 under 0.5 s, cold).

The history is written straight into a sqlite MLflow store (rows as MLflow's SqlAlchemyStore writes
them: experiments and registered models through the client, then runs, tags, metrics and versions in
one transaction; the client checks the counts after), because 1,800 runs through the client take
minutes; seeding is not timed. Each project is one model family (classifier accuracy, LM perplexity,
diffusion loss, dual-encoder recall@1, a quantized classifier) with a monitor run every RUNS/VERSIONS.
A real `mlflow server` then serves that store on 127.0.0.1 as `mlops up` starts it (the same argv:
the basic-auth app, one worker; the same login; stopped by its PID at the end), no gateway runs (its
port refuses: the overview says "gateway down"), the projects folder holds one YAML per project.

Measured in this process, after one warm-up call (imports), median of REPEAT calls each:
* baseline: MLflow's REST round trip (`GET /health`) and one bare `search_runs` (one project's runs);
* build_overview: every read it makes, in parallel, plus assembling the JSON; nothing is cached
  between calls (only the hardware probe, once per process). Its MLflow reads: the experiments, then
  per project its versions (tagged with their evaluation at registration, as `MLflowRegisterOperator`
  does) and its latest monitoring run: 1 + 2 x PROJECTS; "versions registered before evaluation tags"
  is the same overview when no version has them (their runs read too: 1 + 3 x PROJECTS);
* the same MLflow reads one after another (what the thread pool saves), and build_overview on the same
  sqlite store read in process (no server: the library's own cost plus SqlAlchemy's);
* build_project for one project (its whole history: one paged search_runs) and a bare `all_runs` of it.

    .venv/bin/python bench/dashboard.py [PROJECTS RUNS VERSIONS REPEAT]   (default 9 200 20 15)
    .venv/bin/python bench/dashboard.py --smoke                           (tests: 2 x 10 x 2, 2 repeats)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO))

#: family, quality metric, goal, base quality, second eval figure
FAMILIES = (
    ("mlp_classifier", "accuracy", "max", 0.88, "loss"),
    ("tiny_lm", "perplexity", "min", 14.0, "loss"),
    ("tiny_diffusion", "loss", "min", 0.25, "sample_mmd"),
    ("dual_encoder", "recall_at_1", "max", 0.61, "loss"),
    ("mlp_classifier", "accuracy", "max", 0.86, "loss"),  # quantized (int4 versions)
)
TECHNIQUES = ("none", "quantization", "lora", "pruning", "distillation")
MACHINE = "Apple M4 Max, 64 GB, gpu"
START_MS = 1_780_000_000_000


def main(projects: int, runs: int, versions: int, repeat: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    server = None
    try:
        env = {"MLOPS_HOME": str(tmp / "state"), "MLOPS_PROJECTS_DIR": str(tmp / "projects"),
               "MLFLOW_DISABLE_TELEMETRY": "true", "MLOPS_GATEWAY_PORT": str(_free_port())}
        os.environ.update(env)
        os.environ.pop("MLOPS_API_KEYS", None)
        env["MLOPS_MLFLOW_PORT"] = str(_free_port())
        env["MLOPS_TRACKING_URI"] = f"http://127.0.0.1:{env['MLOPS_MLFLOW_PORT']}"
        os.environ.update(env)
        db = tmp / "state" / "mlflow" / "mlflow.db"  # where `mlops up`'s MLflow keeps its store
        started = time.perf_counter()
        names = seed_store(tmp, db, projects, runs, versions)
        seeded = time.perf_counter() - started
        server = start_mlflow(tmp, env)
        measure(env, f"sqlite:///{db}", names, projects, runs, versions, repeat, seeded)
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)


def seed_store(tmp: Path, db: Path, projects: int, runs: int, versions: int) -> list[str]:
    """The YAMLs and the sqlite store: experiments and registered models by the client, the rest in SQL."""
    from mlflow import MlflowClient

    from mlops.tracking.registry import evaluation_tags

    db.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri, uri)
    (tmp / "projects").mkdir()
    names, rows = [], {"runs": [], "tags": [], "metrics": [], "versions": [], "version_tags": []}
    every = max(1, runs // versions)
    for p in range(projects):
        family, metric, goal, base, extra = FAMILIES[p % len(FAMILIES)]
        name = f"p{p}_{family}"
        names.append(name)
        (tmp / "projects" / f"{name}.yaml").write_text(f"name: {name}\nowner: bench\nmodel:\n  family: {family}\n")
        experiment = client.create_experiment(name, artifact_location=(tmp / "artifacts" / name).as_uri(),
                                              tags={"mlops.project": name, "mlops.family": family})
        client.create_registered_model(name)
        quantized = p % len(FAMILIES) == 4
        for i in range(runs):
            moment = START_MS + i * 3_600_000
            technique = "quantization" if quantized else TECHNIQUES[i % len(TECHNIQUES)]
            quality = base * (1 + 0.02 * ((i * 7919) % 11 - 5) / 5)
            run_id = _run(rows, experiment, name, tmp, moment, {
                "mlops.project": name, "mlops.techniques": technique, "machine.id": MACHINE, "mlops.family": family,
                "mlops.quality_metric": metric, "mlops.quality_goal": goal, "mlops.evaluation": "passed",
            }, {metric: quality, f"eval_{metric}": quality, f"eval_{extra}": quality / 3,
                "perf/throughput_per_second": 5000.0 + i, "perf/step_time_ms": 12.0, "perf/train_seconds": 11.0,
                "perf/peak_memory_mb": 900.0, "perf/throughput_per_second_per_gb": 5555.0,
                "perf/model_footprint_mb": 1.1 if quantized else 4.2, "perf/cpu_utilization_mean_percent": 30.0,
                "train_loss": 0.1})
            if i % every == every - 1 and len(rows["versions"]) < (p + 1) * versions:
                number = len([v for v in rows["versions"] if v[0] == name]) + 1
                rows["versions"].append((name, number, moment + 60_000, moment + 60_000, "", "", "None",
                                         f"{(tmp / 'artifacts' / name / run_id).as_uri()}/model", run_id, "READY",
                                         None, "", None, "default"))
                evaluation = {"metric": metric, "goal": goal, "metrics": {metric: quality, extra: quality / 3}}
                for key, value in {"project": name, "techniques": technique, "model_family": family,
                                   "quantization": "int4" if quantized else "none",
                                   "memory_footprint_bytes": "1100000" if quantized else "4200000",
                                   **evaluation_tags(evaluation)}.items():  # as registration tags a version
                    rows["version_tags"].append((key, value, name, number, "default"))
                _run(rows, experiment, name, tmp, moment + 1_800_000, {
                    "mlops.kind": "monitoring", "mlops.project": name, "mlops.model_version": str(number),
                    "mlops.drift_status": "no_drift", "mlops.retrain_requested": "false",
                }, {"drift_share": 0.1, "serving_accuracy": 0.87, "serving_p50_ms": 2.5, "serving_p99_ms": 9.0,
                    "serving_requests": 1000.0})
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                         "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
                         "VALUES (?, ?, 'LOCAL', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, ?)", rows["runs"])
        conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", rows["tags"])
        conn.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, 0, 0)",
                         rows["metrics"])
        conn.executemany("INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
                         "VALUES (?, ?, ?, ?, 0, 0)", rows["metrics"])
        conn.executemany("INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows["versions"])
        conn.executemany("INSERT INTO model_version_tags (key, value, name, version, workspace) VALUES (?, ?, ?, ?, ?)",
                         rows["version_tags"])
    seen_versions = sum(len(client.search_model_versions(f"name = '{n}'")) for n in names)
    seen_runs = len(client.search_runs([client.get_experiment_by_name(names[0]).experiment_id], max_results=5000))
    assert seen_versions == projects * versions, (seen_versions, projects * versions)
    assert seen_runs == runs + versions, (seen_runs, runs + versions)
    return names


def _run(rows: dict, experiment: str, name: str, tmp: Path, moment: int, tags: dict, metrics: dict) -> str:
    run_id = uuid.uuid4().hex
    artifacts = f"{(tmp / 'artifacts' / name / run_id).as_uri()}/artifacts"
    rows["runs"].append((run_id, f"{name}-{run_id[:6]}", moment, moment + 20_000, artifacts, int(experiment)))
    rows["tags"].extend((k, v, run_id) for k, v in {**tags, "mlflow.runName": f"{name}-{run_id[:6]}"}.items())
    rows["metrics"].extend((k, float(v), moment, run_id) for k, v in metrics.items())
    return run_id


def start_mlflow(tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    """MLflow's server as `mlops up` starts it: its argv (basic-auth app, one worker) and its login."""
    from mlops.services import mlflow_auth_environment, platform_services
    from mlops.settings import Settings

    settings = Settings.from_env(env)
    (service,) = [s for s in platform_services(settings) if s.name == "mlflow"]
    port = settings.mlflow_port
    log = open(tmp / "mlflow-server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        service.argv, env={**os.environ, **mlflow_auth_environment(settings)},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow server exited {proc.returncode}:\n{(tmp / 'mlflow-server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit("mlflow server did not answer /health within 120 s")


def stop(proc: subprocess.Popen) -> None:
    """The server and its workers (its own process group), by the PID we started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(env: dict, store: str, names: list[str], projects: int, runs: int, versions: int, repeat: int,
            seeded: float) -> None:
    from mlops.analytics.report_data import all_runs
    from mlops.dashboard import tracking
    from mlops.dashboard.airflow_state import AirflowState
    from mlops.dashboard.overview import build_overview, build_project, default_client
    from mlops.settings import Settings

    settings = Settings.from_env(env)
    client = default_client(settings)
    airflow = AirflowState()
    first = build_overview(settings, airflow, client)  # warm-up: imports, the hardware probe, HTTP sessions
    assert len(first["projects"]) == projects and all(p["versions"]["count"] == versions for p in first["projects"]), \
        first["notes"]
    experiments = {e.name: e for e in client.search_experiments()}
    one = experiments[names[0]]

    def sequential() -> None:
        assert client.search_experiments(max_results=1000)
        for name in names:
            tracking.versions_with_runs(client, name, experiments[name])
            tracking.latest_monitoring(client, experiments[name].experiment_id)

    def untagged() -> None:  # versions as registered before evaluation tags: their runs are read too
        saved = tracking.tagged_quality
        tracking.tagged_quality = lambda version: None
        try:
            build_overview(settings, airflow, client)
        finally:
            tracking.tagged_quality = saved

    local = Settings.from_env({**env, "MLOPS_TRACKING_URI": store})
    local_client = default_client(local)
    build_overview(local, airflow, local_client)
    health = f"{settings.tracking_uri}/health"
    cases = [
        ("REST round trip (GET /health)", lambda: urllib.request.urlopen(health, timeout=5).read()),
        ("one bare search_runs (max 1 run)", lambda: client.search_runs([one.experiment_id], max_results=1)),
        ("build_overview", lambda: build_overview(settings, airflow, client)),
        ("  its MLflow reads, one after another", sequential),
        ("  versions registered before evaluation tags", untagged),
        ("  on the sqlite store in process (no server)", lambda: build_overview(local, airflow, local_client)),
        ("build_project (one project)", lambda: build_project(settings, names[0], airflow, client)),
        ("  bare all_runs of that project", lambda: all_runs(client, one.experiment_id)),
    ]
    results = []
    for label, call in cases:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        results.append((label, statistics.median(times), min(times), max(times)))
    round_trip = results[0][1]
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{projects} projects x {runs} training runs x {versions} versions (+{versions} monitor runs each) on a real "
          f"mlflow server, 127.0.0.1; seeding {seeded:.1f} s (not timed); median of {repeat}; goal: build_overview < 0.5 s")
    print(f"machine: {os.cpu_count()} cores, load average {load} (1 / 5 / 15 min) at the end")
    print(f"{'what':44} {'median s':>9} {'min s':>7} {'max s':>7} {'x round trip':>12}")
    for label, median, low, high in results:
        print(f"{label:44} {median:>9.4f} {low:>7.4f} {high:>7.4f} {median / round_trip:>12.1f}")
    overview = build_overview(settings, airflow, client)
    print(f"overview: {len(overview['projects'])} projects, notes: {overview['notes']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    if sys.argv[1:] == ["--smoke"]:  # tests/bench: the same path end to end, in seconds; figures come from full runs
        main(2, 10, 2, 2)
    else:
        args = [int(a) for a in sys.argv[1:]]
        main(*(args + [9, 200, 20, 15][len(args):]))
