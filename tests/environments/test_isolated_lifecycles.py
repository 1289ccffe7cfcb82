"""Three projects with their own code, two of them requiring versions of `six` the shared layer does not
have (it pins 1.17.0): all three lifecycles succeed, each training sees its own `six`.

Real uv (resolution from the package index, environments built under the state folder), real
Airflow tasks (`dag.test()`), real MLflow and DVC. The isolated projects' train and evaluate run in
their own environments, where the shared layer's packages are not importable; their models are
registered and built like any other. A project whose requirement resolves nowhere is a located
`mlops validate` error and hides no other project's DAGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.cli import main

REPO = Path(__file__).resolve().parents[2]
PROJECTS = {"iso_old": "six==1.15.0", "iso_mid": "six==1.16.0", "on_shared": "six>=1.16"}
# iso_mid's code also imports a package the shared layer does not have at all: every step that runs
# its code must run in its environment (a step that imported it in the shared layer would fail).
ONLY_IN_ITS_ENV = {"iso_mid": "cowsay"}
EXPECTED_SIX = {"iso_old": "1.15.0", "iso_mid": "1.16.0", "on_shared": "1.17.0"}

pytestmark = pytest.mark.timeout(900)


MARKER = "replica-{name}.json"  # what a serving replica of the project saw: its Python and its six


def _project(projects: Path, name: str, requirement: str) -> Path:
    """`mlops new-project`'s project, its family importing `six` (so its code needs what it requires);
    its `predict` notes the interpreter and `six` it runs with (`MARKER` in the projects folder)."""
    from mlops.project_template import create_project

    created = create_project(name, projects)
    yaml = created.folder / "project.yaml"
    requirements = ", ".join(f'"{r}"' for r in [requirement, *filter(None, [ONLY_IN_ITS_ENV.get(name)])])
    yaml.write_text(yaml.read_text().replace("tags: [own-family]\n", f"tags: [own-family]\nretries: 0\n"
                                             f"environment:\n  requirements: [{requirements}]\n"))
    model = created.folder / "model.py"
    code = model.read_text()
    future = "from __future__ import annotations\n"
    assert future in code
    imports = "".join(f"import {package}  # noqa: F401 - required by the project\n"
                      for package in ["six", *filter(None, [ONLY_IN_ITS_ENV.get(name)])])
    code = code.replace(future, future + "\n" + imports, 1)
    predict = "    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:\n"
    assert predict in code
    marker = projects / MARKER.format(name=name)
    note = (  # only inside a Ray worker (the footprint measurement runs predict too, outside Ray)
        "        import json, sys\n"
        "        if 'ray' in sys.modules and sys.modules['ray'].is_initialized():\n"
        f"            open({str(marker)!r}, 'w').write(json.dumps({{'python': sys.executable, 'six': six.__version__}}))\n"
    )
    head, _, tail = code.partition(predict)
    docstring_end = tail.index('"""', tail.index('"""') + 3) + 4  # after the method's docstring line
    model.write_text(head + predict + tail[:docstring_end] + note + tail[docstring_end:])
    return yaml


def test_conflicting_requirements_run_isolated_and_every_lifecycle_succeeds(airflow_db, tmp_path, monkeypatch, capsys):
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient

    from mlops.environments.cache import list_environments
    from mlops.environments.lock import lock_path, read_lock
    from mlops.settings import get_settings
    from mlops_airflow.dag_factory import collect_project_dags

    projects = tmp_path / "projects"
    yamls = {name: _project(projects, name, requirement) for name, requirement in PROJECTS.items()}
    broken = _project(projects, "iso_nowhere", "six==999")
    monkeypatch.setenv("MLOPS_PROJECTS_DIR", str(projects))
    monkeypatch.chdir(tmp_path)

    # Checked before anything runs: two notes (isolated), one error (resolves nowhere), and locks recorded.
    assert main(["validate", "--no-hardware", str(projects)]) == 1
    out = capsys.readouterr().out
    assert f"{broken}:8:18: environment.requirements.0: six==999 resolves nowhere: " in out
    for name in ("iso_old", "iso_mid"):
        assert f"{yamls[name]}: ok ({name}__lifecycle)" in out
        note = next(line for line in out.splitlines() if line.startswith(f"{yamls[name]}:8:18: environment.requirements.0: note:"))
        assert f"runs isolated: {PROJECTS[name]} conflicts with the shared layer's six 1.17.0" in note
        assert read_lock(lock_path(yamls[name])).requirements == tuple(filter(None, [PROJECTS[name], ONLY_IN_ITS_ENV.get(name)]))
    assert f"{yamls['on_shared']}: ok (on_shared__lifecycle)" in out and not lock_path(yamls["on_shared"]).exists()
    # The broken project hides nothing: DAG parsing resolves nothing and loads all four.
    assert {f"{n}__lifecycle" for n in [*PROJECTS, "iso_nowhere"]} <= set(collect_project_dags(projects).dags)

    bag = DagBag(dag_folder=str(REPO / "dags" / "project_lifecycles.py"))
    client = MlflowClient(get_settings().tracking_uri)
    for name in PROJECTS:
        run = bag.get_dag(f"{name}__lifecycle").test()
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert set(states.values()) == {"success"}, (name, states)
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        training = tis["train"].xcom_pull(task_ids="train")
        params = client.get_run(training["run_id"]).data.params
        assert params["environment.six"] == EXPECTED_SIX[name], (name, params)
        isolated = name != "on_shared"
        assert (str(get_settings().home / "envs") in params["environment.python"]) is isolated, params["environment.python"]
        assert tis["evaluate"].xcom_pull(task_ids="evaluate")["passed"]
        assert tis["register"].xcom_pull(task_ids="register")["version"] == 1

    # Monitored: the drift reference comes from its family's code, which imports cowsay: its environment computes it.
    from mlops.monitoring.reference import load_reference

    reference = load_reference(get_settings(), "iso_mid", 1)
    assert list(reference.frame.columns) == [f"in.x_{i}" for i in range(8)] and len(reference.frame) == 960

    # Served in its own environment: the deploy step starts the replica under the project's interpreter.
    import json
    import urllib.request

    from mlops_testing import free_port, free_port_run, ray_head

    from mlops.config import load_project
    from mlops.environments.project import project_python
    from mlops.serving.deploy import deploy_version

    monkeypatch.setenv("MLOPS_RAY_PORT", str(free_port_run(3)))  # the head binds it and the next two
    monkeypatch.setenv("MLOPS_SERVE_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_SERVING_MEMORY_GB", "2")
    settings = get_settings()
    config = load_project(yamls["iso_mid"])
    python = project_python(settings, config)
    with ray_head(settings, tmp_path / "ray-head.log"):
        result = deploy_version(settings, "iso_mid", config.serving, 1, python)
        request = urllib.request.Request(result["url"], data=json.dumps({"inputs": {"x": [[0.1] * 8]}}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert len(json.loads(response.read())["outputs"]["label"]) == 1
    seen = json.loads((projects / MARKER.format(name="iso_mid")).read_text())
    assert seen == {"python": str(python), "six": "1.16.0"}

    built = {info.key: info for info in list_environments(get_settings()) if info.state == "ready"}
    for name in ("iso_old", "iso_mid"):
        lock = read_lock(lock_path(yamls[name]))
        assert lock.env in built and f"six=={EXPECTED_SIX[name]}" in built[lock.env].pinned
