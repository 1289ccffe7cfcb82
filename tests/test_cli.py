"""`mlops` subcommands over the library: init-project, families, schema, hardware."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_init_project_versions_the_data_before_any_run(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    assert main(["init-project", "federated_learning"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["created"] and result["version"].endswith(".dir")
    assert (tmp_path / "dvc" / "data" / "federated_learning.dvc").exists()
    assert main(["init-project", str(REPO / "projects" / "federated_learning.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == result["version"]


def test_families_lists_every_registered_family(capsys):
    from mlops.training.families import family_names

    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in family_names())


def test_schema_export(tmp_path: Path):
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    schema = json.loads((tmp_path / "s.json").read_text())
    family = schema["$defs"]["ModelConfig"]["properties"]["family"]
    assert "mlp_classifier" in family["anyOf"][0]["enum"]
    import jsonschema

    for accepted in ("mlp_classifier", "model:MyFamily", "acme_models.family:AcmeFamily", "acme-vision"):
        jsonschema.validate(accepted, family)
    for refused in ("model:", "a b", "pkg.:Cls", "model:My Family"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, family)


def test_hardware_subcommand_reads_a_support_bundle(capsys):
    bundle = REPO / "tests" / "hardware" / "fixtures" / "m2pro_bundle"
    assert main(["hardware", "--from-dir", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["performance_cores"] == 8


def test_init_project_and_demo_name_the_missing_file_instead_of_a_traceback(tmp_path: Path, monkeypatch, capsys):
    from mlops.demo import run_demo
    from mlops.settings import get_settings

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    assert main(["init-project", "no_such_project"]) == 1
    assert "no_such_project.yaml" in capsys.readouterr().err
    assert run_demo(get_settings(), "no_such_project") == 1
    err = capsys.readouterr().err
    assert "no_such_project.yaml" in err and "cannot read file" in err


def test_a_bad_numeric_setting_is_named_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_CAPTURE_FLUSH_SECONDS", "0")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "MLOPS_CAPTURE_FLUSH_SECONDS='0'" in err and "unset it for the default (5.0)" in err and "Traceback" not in err
    monkeypatch.setenv("MLOPS_CAPTURE_FLUSH_SECONDS", "2.5")
    monkeypatch.setenv("MLOPS_GATEWAY_PORT", "eighty")
    assert main(["status"]) == 2 and "MLOPS_GATEWAY_PORT='eighty': expected a port number" in capsys.readouterr().err


def _dry_run_argv(capsys, *args: str) -> list[str]:
    import shlex

    assert main(["worker", *args, "--dry-run"]) == 0
    return shlex.split(capsys.readouterr().out.strip().splitlines()[-1])


def test_worker_node_serves_its_federated_queue_under_its_name(capsys):
    """`mlops worker --node NAME`: the hardware queues plus node_NAME, Celery name NAME@<host>; --node-only: that queue."""
    import sys

    from mlops.hardware import probe
    from mlops.resources.names import worker_queues

    airflow = str(Path(sys.executable).with_name("airflow"))
    queues = worker_queues(probe())
    assert _dry_run_argv(capsys) == [
        airflow, "celery", "worker", "--queues", ",".join(queues), "--concurrency", "1", "--skip-serve-logs"]
    assert _dry_run_argv(capsys, "--node", "mac_a") == [
        airflow, "celery", "worker", "--queues", ",".join([*queues, "node_mac_a"]), "--concurrency", "1",
        "--celery-hostname", "mac_a@%h", "--skip-serve-logs"]
    assert _dry_run_argv(capsys, "--node", "mac_a", "--node-only", "--concurrency", "2") == [
        airflow, "celery", "worker", "--queues", "node_mac_a", "--concurrency", "2",
        "--celery-hostname", "mac_a@%h", "--skip-serve-logs"]


def test_worker_node_flags_are_checked(capsys):
    assert main(["worker", "--node-only", "--dry-run"]) == 2
    assert "--node-only needs --node NAME" in capsys.readouterr().err
    assert main(["worker", "--node", "Mac-A", "--dry-run"]) == 2  # not a name the YAML accepts: no queue could match
    assert "lowercase letters, digits and _" in capsys.readouterr().err
