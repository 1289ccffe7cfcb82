"""`mlops validate`: prints every error of every file, exit 1 on any error, 0 when all are valid."""

from __future__ import annotations

from pathlib import Path

from mlops.cli import main


def test_validate_reports_every_file(tmp_path: Path, capsys):
    (tmp_path / "good.yaml").write_text("name: good_one\nmodel:\n  family: mlp_classifier\n")
    (tmp_path / "bad.yaml").write_text("name: bad_one\nmodel:\n  family: mlp_classifier\nretrys: 2\n")
    (tmp_path / "worse.yaml").write_text("name: [\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'bad.yaml'}:4:1: retrys: unknown field (did you mean 'retries'?)" in out
    assert f"{tmp_path / 'worse.yaml'}:" in out and "YAML syntax error" in out
    assert f"{tmp_path / 'good.yaml'}: ok (good_one__lifecycle)" in out


def test_validate_shipped_projects_exit_zero(capsys):
    assert main(["validate"]) == 0


def test_validate_refuses_more_memory_than_the_machine_has(tmp_path: Path, capsys):
    (tmp_path / "huge.yaml").write_text("name: huge_one\nmodel:\n  family: mlp_classifier\ntraining:\n  memory_gb: 1024\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'huge.yaml'}:5:14: training.memory_gb:" in out and "would never be scheduled" in out
    assert main(["validate", "--no-hardware", str(tmp_path)]) == 0
