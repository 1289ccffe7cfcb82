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
