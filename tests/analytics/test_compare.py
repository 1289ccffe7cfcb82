"""`mlops compare` on a seeded MLflow store where the best technique on each machine is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.analytics import names
from mlops.analytics.seeding import EXPECTED_BEST, MACHINES, seed_history
from mlops.cli import main

M4, M3 = list(MACHINES)
PROJECTS = ("alpha_proj", "beta_proj", "gamma_proj")


def _yaml(name: str, compare: str = "", evaluation: str = "") -> str:
    return f"name: {name}\nmodel:\n  family: mlp_classifier\n{compare}{evaluation}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite MLflow store with 3 projects x 20 runs (every technique twice on each machine)."""
    from mlflow import MlflowClient

    home = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    history = seed_history(client, list(PROJECTS), 20, seed=7)
    assert (history.runs, history.versions, history.monitoring_runs, history.failed_runs) == (60, 6, 12, 6)
    projects = home / "projects"
    projects.mkdir()
    (projects / "alpha_proj.yaml").write_text(_yaml("alpha_proj"))  # fastest within 2% (the defaults)
    (projects / "beta_proj.yaml").write_text(_yaml("beta_proj", "compare:\n  objective: least_energy\n"))
    (projects / "gamma_proj.yaml").write_text(_yaml("gamma_proj", "compare:\n  objective: best_quality\n"))
    return {"home": home, "uri": uri, "projects": projects, "client": client}


@pytest.fixture
def env(store, monkeypatch):
    monkeypatch.setenv("MLOPS_TRACKING_URI", store["uri"])
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(store["projects"]))
    return store


def _verdicts(out: str) -> dict[str, dict[str, str | None]]:
    return {p["project"]: {m["machine"]: m["best"] for m in p["machines"]} for p in json.loads(out)}


def test_compare_finds_the_known_best_technique_on_each_machine(env, capsys):
    assert main(["compare", "--json", "--no-tags"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [p["project"] for p in result] == list(PROJECTS)  # the Default experiment is no project
    verdicts = _verdicts(json.dumps(result))
    assert verdicts["alpha_proj"] == EXPECTED_BEST
    # least_energy: the M4 Max has a power reading (quantization uses least energy per sample);
    # the M3 Max has none, so the objective falls back to fastest there and says so.
    assert verdicts["beta_proj"] == {M4: "quantization", M3: "lora"}
    beta = next(p for p in result if p["project"] == "beta_proj")
    m3 = next(m for m in beta["machines"] if m["machine"] == M3)
    assert "no power reading on this machine, so fastest" in m3["reason"]
    assert verdicts["gamma_proj"] == {M4: "none", M3: "none"}  # best quality alone

    alpha = next(p for p in result if p["project"] == "alpha_proj")
    assert (alpha["metric"], alpha["goal"], alpha["objective"]) == ("accuracy", "max", "fastest")
    m4 = next(m for m in alpha["machines"] if m["machine"] == M4)
    groups = {g["technique"]: g for g in m4["groups"]}
    assert set(groups) == {"none", "quantization", "pruning", "lora", "distillation"}
    assert all(g["runs"] == 2 for g in groups.values())  # monitoring and failed runs are not training runs
    # pruning is the fastest of all but 6% worse: not good enough, so not chosen
    assert groups["pruning"]["figures"][names.THROUGHPUT] > groups["quantization"]["figures"][names.THROUGHPUT]
    assert not groups["pruning"]["good_enough"] and groups["quantization"]["good_enough"]


def test_a_quality_threshold_replaces_the_tolerance(env, capsys):
    (env["projects"] / "alpha_proj.yaml").write_text(
        _yaml("alpha_proj", "compare:\n  objective: least_memory\n", "evaluation:\n  threshold: 0.95\n")
    )
    try:
        assert main(["compare", "--project", "alpha_proj", "--json", "--no-tags"]) == 0
        (alpha,) = json.loads(capsys.readouterr().out)
        assert {m["machine"]: m["best"] for m in alpha["machines"]} == {M4: None, M3: None}
        assert all("no technique reaches the quality threshold 0.95" in m["reason"] for m in alpha["machines"])
        (env["projects"] / "alpha_proj.yaml").write_text(
            _yaml("alpha_proj", "compare:\n  objective: least_memory\n", "evaluation:\n  threshold: 0.88\n")
        )
        assert main(["compare", "--project", "alpha_proj", "--json", "--no-tags"]) == 0
        verdicts = _verdicts(capsys.readouterr().out)
        assert verdicts["alpha_proj"] == {M4: "quantization", M3: "quantization"}  # least peak memory of those >= 0.88
    finally:
        (env["projects"] / "alpha_proj.yaml").write_text(_yaml("alpha_proj"))


def test_the_verdict_is_tagged_on_the_experiment_and_the_latest_version(env, capsys):
    client = env["client"]
    assert main(["compare", "--project", "alpha_proj"]) == 0
    table = capsys.readouterr().out
    assert f"machine: {M4}" in table and "best: quantization (fastest: perf/throughput_per_second" in table
    experiment = client.get_experiment_by_name("alpha_proj")
    tag = json.loads(experiment.tags[names.BEST_TECHNIQUE])
    assert tag == {"objective": "fastest", "best": EXPECTED_BEST}
    latest = max(client.search_model_versions("name = 'alpha_proj'"), key=lambda v: int(v.version))
    run_tags = client.get_run(latest.run_id).data.tags
    machine = run_tags[names.MACHINE]
    assert latest.tags[names.BEST_TECHNIQUE_HERE] == f"{EXPECTED_BEST[machine]} on {machine} (fastest)"
    assert latest.tags[names.IS_BEST_TECHNIQUE] == str(run_tags[names.TECHNIQUES] == EXPECTED_BEST[machine]).lower()
    assert names.BEST_TECHNIQUE not in client.get_experiment_by_name("beta_proj").tags  # only the one asked for


def test_the_seeded_machines_are_what_the_probe_reads_from_recorded_sysctl_outputs():
    from mlops.analytics.performance import machine_tags
    from mlops.analytics.seeding import MACHINE_TAGS, RECORDED_BUNDLES
    from mlops.hardware.probe import probe_from_dir

    fixtures = Path(__file__).resolve().parents[1] / "hardware" / "fixtures" / "recorded"
    read = [machine_tags(probe_from_dir(fixtures / bundle), "gpu") for bundle in RECORDED_BUNDLES]
    assert [tags.pop(names.MACHINE) for tags in read] == list(MACHINE_TAGS) == list(MACHINES)
    assert read == list(MACHINE_TAGS.values())


def test_an_unknown_project_is_a_clear_error(env, capsys):
    assert main(["compare", "--project", "nope_proj"]) == 1
    err = capsys.readouterr().err
    assert "no finished training runs of 'nope_proj'" in err and "no project YAML names it" in err


def test_runs_without_figures_or_quality_are_left_out_not_fatal(tmp_path: Path):
    from mlflow import MlflowClient

    from mlops.analytics.compare import compare_projects

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("old_proj", tags={names.PROJECT: "old_proj"})
    legacy = client.create_run(experiment, tags={names.TECHNIQUES: "none"})  # before issue 15: no quality tags
    client.log_metric(legacy.info.run_id, "accuracy", 0.9)
    client.set_terminated(legacy.info.run_id)
    no_figures = client.create_run(experiment, tags={
        names.TECHNIQUES: "lora", names.MACHINE: M4, names.QUALITY_METRIC: "accuracy", names.QUALITY_GOAL: "max"})
    client.log_metric(no_figures.info.run_id, "accuracy", 0.8)
    client.set_terminated(no_figures.info.run_id)
    (comparison,) = compare_projects(client, {})
    (machine,) = comparison.machines
    assert [g.technique for g in machine.groups] == ["lora"]
    assert machine.best is None and f"has {names.THROUGHPUT}" in machine.reason
