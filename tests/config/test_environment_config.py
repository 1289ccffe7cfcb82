"""`environment.requirements`: syntax checked at every parse (located per item), resolved only by
`mlops validate` (errors for missing and unresolvable packages, a note for a conflict), never by
DAG parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlops.cli import main
from mlops.config import ProjectConfigError, load_projects, parse_project_text

REPO = Path(__file__).resolve().parents[2]
HEAD = "name: own_env\nmodel:\n  family: mlp_classifier\nenvironment:\n  requirements:\n"


def _project(*requirements: str) -> str:
    return HEAD + "".join(f"    - {json.dumps(r)}\n" for r in requirements)


def _errors(text: str, deep: bool = False) -> list:
    with pytest.raises(ProjectConfigError) as caught:
        parse_project_text(text, "p.yaml", deep)
    return caught.value.errors


def test_requirements_default_to_none_and_take_registry_requirements():
    assert parse_project_text("name: plain\nmodel:\n  family: mlp_classifier\n", "p.yaml").environment.requirements == []
    config = parse_project_text(_project("six==1.16.0", " scikit-learn>=1.5,<2 ", "requests[socks]",
                                         'tomli; python_version < "3.11"'), "p.yaml")
    assert config.environment.requirements[1] == "scikit-learn>=1.5,<2"


@pytest.mark.parametrize(
    ("requirement", "message"),
    [
        ("./vendor/pkg", "is a path or URL: only packages from the package index"),
        ("/wheels/x-1.0-py3-none-any.whl", "is a path or URL"),
        ("git+https://github.com/a/b", "is a path or URL"),
        ("pkg @ https://example.com/pkg-1.0.tar.gz", "names a URL (https://example.com/pkg-1.0.tar.gz)"),
        ("-e .", "is a pip option, not a requirement"),
        ("--index-url https://x", "is a pip option"),
        ("pkg-1.0-py3-none-any.whl", "names a file"),
        ("six # pinned", "is not a PEP 508 requirement (Expected semicolon"),
        ("six=1.16", "is not a PEP 508 requirement"),
        ("", "an empty requirement"),
    ],
)
def test_a_bad_requirement_is_located_at_its_item(requirement: str, message: str):
    [error] = _errors(_project("six>=1.16", requirement))
    assert (error.field, error.line, error.column) == ("environment.requirements.1", 7, 7)
    assert message in error.message
    if requirement:
        assert repr(requirement) in error.message


def test_a_package_listed_twice_is_an_error():
    [error] = _errors(_project("six>=1.16", "numpy", "Six<2"))
    assert error.field == "environment.requirements" and (error.line, error.column) == (6, 5)
    assert "six is listed twice (items 0 and 2)" in error.message


def test_an_unknown_environment_key_suggests_the_right_one():
    [error] = _errors("name: own_env\nmodel:\n  family: mlp_classifier\nenvironment:\n  requirement: [six]\n")
    assert (error.field, error.message, error.suggestion) == (
        "environment.requirement", "unknown field", "did you mean 'requirements'?")


def _poison(tmp_path: Path) -> dict[str, str]:
    """An environment where running uv leaves a mark: a `uv` first on PATH, uv settings that fail."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "uv-ran"
    (bin_dir / "uv").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (bin_dir / "uv").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple",
            "UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "no-cache"), "UV_HTTP_RETRIES": "0"}


def test_parsing_never_runs_uv(tmp_path: Path, monkeypatch):
    for key, value in _poison(tmp_path).items():
        monkeypatch.setenv(key, value)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a subprocess was started at parse time: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "conflict.yaml").write_text(_project("six==1.16.0").replace("own_env", "conflict"))
    (projects / "missing.yaml").write_text(_project("cowsay").replace("own_env", "missing"))
    (projects / "nowhere.yaml").write_text(_project("six==999").replace("own_env", "nowhere"))
    configs, errors = load_projects(sorted(projects.iterdir()))  # what DAG parsing calls
    assert errors == {} and len(configs) == 3
    assert not (tmp_path / "uv-ran").exists() and not list(projects.glob("*.lock"))
    assert main(["validate", "--no-import", "--no-hardware", str(projects)]) == 0  # the flag skips resolution


def test_dag_parsing_resolves_nothing(tmp_path: Path):
    """The real DAG folder, parsed by Airflow's DagBag over projects with every kind of requirement."""
    projects = tmp_path / "projects"
    projects.mkdir()
    (projects / "conflict.yaml").write_text(_project("six==1.16.0").replace("own_env", "conflict"))
    (projects / "nowhere.yaml").write_text(_project("six==999").replace("own_env", "nowhere"))
    script = textwrap.dedent(
        """
        import json, subprocess, sys
        started = []
        real = subprocess.Popen.__init__
        def record(self, args, *a, **k):
            started.append(repr(args))
            return real(self, args, *a, **k)
        subprocess.Popen.__init__ = record
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=sys.argv[1])
        print(json.dumps({"dags": sorted(bag.dag_ids), "errors": list(bag.import_errors), "started": started,
                          "resolve": "mlops.environments.resolve" in sys.modules}))
        """
    )
    env = {**os.environ, **_poison(tmp_path), "MLOPS_PROJECTS_DIR": str(projects)}
    done = subprocess.run([sys.executable, "-c", script, str(REPO / "dags")], env=env, capture_output=True,
                          text=True, check=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"conflict__lifecycle", "nowhere__lifecycle"} <= set(result["dags"]) and result["errors"] == []
    assert [s for s in result["started"] if "uv" in s] == [] and result["resolve"] is False
    assert not (tmp_path / "uv-ran").exists() and not list(projects.glob("*.lock"))


@pytest.mark.timeout(300)
def test_validate_reports_missing_and_unresolvable_packages_and_notes_a_conflict(tmp_path: Path, capsys):
    missing = tmp_path / "missing.yaml"
    missing.write_text(_project("six>=1.16", "cowsay").replace("own_env", "missing"))
    nowhere = tmp_path / "nowhere" / "project.yaml"
    nowhere.parent.mkdir()
    nowhere.write_text(_project("six==999").replace("own_env", "nowhere"))
    conflict = tmp_path / "conflict.yaml"
    conflict.write_text(_project("six==1.15.0").replace("own_env", "conflict"))

    assert main(["validate", "--no-hardware", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert (f"{missing}:7:7: environment.requirements.1: package cowsay is not in the shared layer this project "
            "runs in; cowsay==") in out
    assert "(add it: `uv add 'cowsay'` in" in out
    assert f"{nowhere}:6:7: environment.requirements.0: six==999 resolves nowhere: Because there is no version" in out
    assert f"{conflict}: ok (conflict__lifecycle)" in out
    assert (f"{conflict}:6:7: environment.requirements.0: note: runs isolated: six==1.15.0 conflicts with the "
            "shared layer's six 1.17.0; locked in conflict.requirements.lock") in out
    assert "3 file(s), 2 invalid, 2 error(s), 1 note(s)" in captured.err
    lock = tmp_path / "conflict.requirements.lock"
    assert "\nsix==1.15.0\n" in lock.read_text()
    assert not (tmp_path / "missing.requirements.lock").exists() and not (nowhere.parent / "requirements.lock").exists()

    # --no-import resolves nothing, and still says what the (current) lock records
    assert main(["validate", "--no-import", "--no-hardware", str(conflict)]) == 0
    assert "note: runs isolated: six==1.15.0" in capsys.readouterr().out
    conflict.write_text(_project("six==1.16.0").replace("own_env", "conflict"))
    assert main(["validate", "--no-import", "--no-hardware", str(conflict)]) == 0
    assert "note: conflict.requirements.lock is out of date" in capsys.readouterr().out
    assert main(["validate", "--no-hardware", str(conflict)]) == 0  # re-resolved
    assert "\nsix==1.16.0\n" in lock.read_text()
    conflict.write_text(_project("six>=1.16").replace("own_env", "conflict"))
    assert main(["validate", "--no-hardware", str(conflict)]) == 0
    assert not lock.exists()  # back on the shared layer
