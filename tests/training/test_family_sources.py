"""Where a family comes from: built in, an installed package's entry point, or the project's own code.

Families outside the platform are real Python files on disk (a project folder, a package whose
metadata publishes the `mlops.families` entry point, exactly as an installed wheel leaves it);
each broken kind fails with the project's file or entry point and what is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlops.training.families import (
    BUILT_IN,
    FamilyError,
    entry_point_families,
    find_family,
    get_family,
    load_family_class,
)

REPO = Path(__file__).resolve().parents[2]

# A complete family in a dozen lines: linear regression on y = 2x + 1 (needs no MLX to import).
FAMILY_CODE = '''
from typing import Any

from mlops.training.families.base import EpochStats, ModelFamily, TrainingSession

NAME = {name!r}


class Session(TrainingSession):
    def train_epoch(self, data, batch_size, epoch):
        return EpochStats(loss=0.0, samples=len(data["train_x"]))

    def evaluate(self, data):
        return {{"mse": 0.0}}


class {cls}(ModelFamily):
    name = NAME
    description = "test family " + NAME
    metrics = {{"mse": "min"}}
    default_hyperparameters: dict[str, Any] = {{"width": 4}}

    def make_dataset(self, seed, num_samples, hyperparameters):
        import numpy as np

        x = np.arange(num_samples, dtype=np.float32)[:, None]
        return {{"train_x": x, "train_y": 2 * x + 1, "val_x": x[:8], "val_y": 2 * x[:8] + 1}}

    def create(self, hyperparameters, techniques, seed):
        return Session()
'''


def _write_family(folder: Path, module: str = "model", cls: str = "OwnFamily", name: str = "own") -> Path:
    path = folder.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAMILY_CODE.format(name=name, cls=cls))
    return path


def test_built_in_families_come_from_this_package():
    for name, target in BUILT_IN.items():
        source = find_family(name)
        assert (source.kind, source.target, source.origin, source.code_dir) == ("built-in", target, "built in", None)
        assert get_family(name).name == name


def test_project_code_is_imported_from_the_project_folder_and_two_projects_never_clash(tmp_path):
    """Both projects have a `model.py`: each gets its own (imported under a package of its own)."""
    a, b = tmp_path / "projects" / "alpha", tmp_path / "projects" / "beta"
    file_a = _write_family(a, name="alpha_family")
    _write_family(b, name="beta_family")
    source = find_family("model:OwnFamily", a)
    assert (source.kind, source.origin, source.code_dir) == ("project code", str(file_a), a)
    assert get_family("model:OwnFamily", a).name == "alpha_family"
    assert get_family("model:OwnFamily", b).name == "beta_family"
    assert get_family("model:OwnFamily", a).name == "alpha_family"  # still alpha's after beta's import
    assert "model" not in sys.modules  # never under the bare name another project (or a package) may use


def test_a_dotted_module_path_and_a_package_in_the_project_folder(tmp_path):
    folder = tmp_path / "proj"
    (folder / "nets").mkdir(parents=True)
    (folder / "nets" / "__init__.py").write_text("")
    _write_family(folder, module="nets.classifier", name="dotted")
    assert find_family("nets.classifier:OwnFamily", folder).kind == "project code"
    assert get_family("nets.classifier:OwnFamily", folder).name == "dotted"


def test_a_module_path_outside_the_project_folder_is_an_installed_module():
    source = find_family("mlops.training.families.mlp_classifier:MLPClassifierFamily")
    assert (source.kind, source.origin) == ("module", "module mlops.training.families.mlp_classifier")
    assert get_family(source.ref).name == "mlp_classifier"


def _installed_package(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A package as an installer leaves it: its modules and a .dist-info holding METADATA and entry_points.txt."""
    for module, code in modules.items():
        (site / f"{module}.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-1.2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.0\n")
    (info / "entry_points.txt").write_text(
        "[mlops.families]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    )


def _run(code: str, site: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "include"), str(REPO)])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_an_installed_package_publishes_a_family_through_the_entry_point_group(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _installed_package(site, "acme-models", {"acme_tabular": "acme_family:AcmeFamily"},
                       {"acme_family": FAMILY_CODE.format(name="acme_tabular", cls="AcmeFamily")})
    out = _run(
        """
        import json
        from mlops.training.families import family_names, find_family, get_family
        source = find_family("acme_tabular")
        print(json.dumps({"names": family_names(), "kind": source.kind, "origin": source.origin,
                          "target": source.target, "name": get_family("acme_tabular").name}))
        """,
        site,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found == {
        "names": sorted([*BUILT_IN, "acme_tabular"]),
        "kind": "entry point",
        "origin": "package acme-models 1.2.0",
        "target": "acme_family:AcmeFamily",
        "name": "acme_tabular",
    }


def test_mlops_families_lists_where_each_family_comes_from(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _installed_package(site, "acme-models", {"acme_tabular": "acme_family:AcmeFamily"},
                       {"acme_family": FAMILY_CODE.format(name="acme_tabular", cls="AcmeFamily")})
    projects = tmp_path / "projects"
    model = _write_family(projects / "own_proj", name="own_proj_family")
    (projects / "own_proj" / "project.yaml").write_text("name: own_proj\nmodel: {family: 'model:OwnFamily'}\n")
    (projects / "uses_acme.yaml").write_text("name: uses_acme\nmodel: {family: acme_tabular}\n")
    env_code = f"""
        import os, sys
        os.environ["MLOPS_PROJECTS_DIR"] = {str(projects)!r}
        os.environ["MLOPS_HOME"] = {str(tmp_path / "home")!r}
        from mlops.cli import main
        sys.exit(main(["families"]))
        """
    out = _run(env_code, site)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if not line.startswith(" ")}
    assert "from: built in" in lines["mlp_classifier"]
    assert "from: package acme-models 1.2.0" in lines["acme_tabular"] and "projects: uses_acme" in lines["acme_tabular"]
    assert f"from: {model}" in lines["model:OwnFamily"] and "projects: own_proj" in lines["model:OwnFamily"]


BROKEN = {
    "import fails": ("import numpy\nraise RuntimeError('no GPU found')\n", r"importing it failed: RuntimeError: no GPU found"),
    "no such class": ("X = 1\n", r"the module has no 'OwnFamily'"),
    "not a family": ("class OwnFamily:\n    pass\n", r"OwnFamily must subclass mlops\.training\.families\.base\.ModelFamily"),
    "abstract": (
        "from mlops.training.families.base import ModelFamily\n"
        "class OwnFamily(ModelFamily):\n    name = 'x'\n    description = 'x'\n    metrics = {'m': 'max'}\n"
        "    default_hyperparameters = {}\n",
        r"OwnFamily does not implement create, make_dataset",
    ),
    "bad attributes": (
        FAMILY_CODE.format(name="x", cls="OwnFamily").replace('metrics = {"mse": "min"}', 'metrics = {"mse": "lower"}')
        .replace('    description = "test family " + NAME\n', ""),
        r"class attribute 'description' must be a str .*; metrics 'mse' must map to 'max' or 'min'",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_family_names_its_file_and_what_is_wrong(tmp_path, kind):
    code, expected = BROKEN[kind]
    folder = tmp_path / f"p_{kind.replace(' ', '_')}"
    folder.mkdir()
    (folder / "model.py").write_text(code)
    with pytest.raises(FamilyError, match=rf"model family 'model:OwnFamily' \({folder / 'model.py'}\).*{expected}"):
        get_family("model:OwnFamily", folder)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("mlp_clasifier", r"unknown model family 'mlp_clasifier' \(did you mean 'mlp_classifier'\?; or give your own as `module:Class`\)"),
        ("model:", r"neither a family name nor a `package.module:Class` path"),
        ("my model", r"neither a family name nor a `package.module:Class` path"),
        ("no_such_package_xyz.mod:Family", r"\(module no_such_package_xyz.mod\): importing it failed: ModuleNotFoundError"),
    ],
)
def test_a_reference_that_leads_nowhere_says_so(ref, message):
    with pytest.raises(FamilyError, match=message):
        get_family(ref)


def test_entry_points_are_read_without_importing_the_package(tmp_path):
    """Finding an entry-point family reads metadata only: a package that breaks on import is found, not run."""
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "imported"
    _installed_package(site, "broken-pkg", {"broken_family": "broken_mod:Family"},
                       {"broken_mod": f"open({str(marker)!r}, 'w').close()\nraise ImportError('broken on import')\n"})
    out = _run(
        """
        from mlops.training.families import FamilyError, find_family, load_family_class
        source = find_family("broken_family")
        print(source.kind, source.origin)
        try:
            load_family_class(source)
        except FamilyError as exc:
            print(exc)
        """,
        site,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "entry point package broken-pkg 1.2.0",
        "model family 'broken_family' (package broken-pkg 1.2.0): importing it failed: ImportError: broken on import",
    ]
    assert marker.exists()  # load_family_class did import it; find_family before it did not (checked below)
    marker.unlink()
    out = _run("from mlops.training.families import find_family; find_family('broken_family')", site)
    assert out.returncode == 0 and not marker.exists()


def test_entry_point_lookup_is_cached_per_process():
    entry_point_families.cache_clear()
    first = entry_point_families()
    assert entry_point_families() is first


def test_a_built_in_is_loaded_through_the_same_checks():
    """No special case: the built-in classes pass the contract check every family goes through."""
    for name in BUILT_IN:
        assert load_family_class(find_family(name)).name == name
