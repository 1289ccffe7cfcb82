"""`mlops envs list|build|prune`: the parser in mlops.cli and the logic in cli_support, on a temporary state folder."""

from __future__ import annotations

import io

import pytest

from mlops.cli import build_parser
from mlops.environments import cli_support
from mlops.environments.cache import environments_root
from mlops.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"MLOPS_HOME": str(tmp_path / "state")})


def envs(settings: Settings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli_support.run(settings, build_parser().parse_args(["envs", *argv]), out)
    return code, out.getvalue()


def test_read_pinned(tmp_path):
    path = tmp_path / "pinned.txt"
    path.write_text("# resolved\nsix==1.17.0  # via dateutil\n\npython-dateutil==2.9.0.post0 \\\n    --hash=sha256:abc\n")
    assert cli_support.read_pinned(path) == ["six==1.17.0", "python-dateutil==2.9.0.post0 --hash=sha256:abc"]


def test_build_list_prune_from_requirement_files(settings, tmp_path):
    assert envs(settings, "list") == (0, "no isolated environments (projects on the shared layer only)\n")
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("six==1.17.0\n")
    second.write_text("six==1.16.0\n")
    code, out = envs(settings, "build", "--requirements", str(first), "--requirements", str(second))
    key_a, key_b = cli_support.environment_key(["six==1.17.0"]), cli_support.environment_key(["six==1.16.0"])
    assert code == 0 and key_a != key_b
    assert f"{first}: {key_a} ready" in out and f"{second}: {key_b} ready" in out
    assert (environments_root(settings) / key_a / "bin" / "python").exists()

    code, out = envs(settings, "list")
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["key", "state", "projects", "size"]
    assert sorted(row.split()[0] for row in rows) == sorted([key_a, key_b])
    assert all(row.split()[1] == "ready" for row in rows)

    assert envs(settings, "prune", "--dry-run", "--keep", key_a) == (0, f"would remove: {key_b}\n")
    assert envs(settings, "prune", "--keep", key_a) == (0, f"removed: {key_b}\n")
    assert envs(settings, "prune", "--keep", key_a) == (0, "nothing to prune\n")


def test_projects_hook_drives_list_build_and_prune(settings, monkeypatch):
    key = cli_support.environment_key(["six==1.17.0"])
    monkeypatch.setattr(cli_support, "projects_environments",
                        lambda _settings: {"legacy_tf": (["six==1.17.0"], key), "other": (["six==1.17.0"], key)})
    code, out = envs(settings, "list")
    assert code == 0 and out.splitlines()[1].split()[:3] == [key, "missing", "legacy_tf,other"]
    code, out = envs(settings, "build")
    assert code == 0 and f"legacy_tf: {key} ready" in out
    assert envs(settings, "list")[1].splitlines()[1].split()[:3] == [key, "ready", "legacy_tf,other"]
    assert envs(settings, "prune") == (0, "nothing to prune\n")  # the projects still use it


def test_a_failed_build_exits_non_zero(settings, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("python-dateutil==2.9.0.post0\n")  # not closed: six is missing
    code, _ = envs(settings, "build", "--requirements", str(bad))
    assert code == 1 and "six" in capsys.readouterr().err
