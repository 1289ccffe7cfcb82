"""Where a project's model family comes from, looked up by what its YAML gives in `model.family`.

`model.family` is one of:

- a **built-in** name (`mlp_classifier`): the six families this package ships;
- a name an **installed package** publishes in the `mlops.families` entry-point group, the way
  pytest plugins and Airflow providers are found (in that package's pyproject.toml:
  `[project.entry-points."mlops.families"] acme = "acme_models.family:AcmeFamily"`);
- a **`module:Class` path**: the module is looked up first in the project's own code folder
  (`projects/<name>/` for a project folder, else `projects/`), imported under a package name of
  its own so two projects' `model.py` never clash, then among installed packages.

Finding a family (`find_family`) never imports user code: DAG parsing uses it. Importing it
(`get_family`) happens in tasks, in serving and in `mlops validate`. Every caller (trainer,
evaluation, serving, monitoring) goes through `get_family`: a built-in family is just the first
user of the same path.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.training.families.base import ModelFamily

ENTRY_POINT_GROUP = "mlops.families"

# name -> "module:Class"; importing a family imports MLX, so the registry stays lazy.
BUILT_IN: dict[str, str] = {
    "dual_encoder": "mlops.training.families.dual_encoder:DualEncoderFamily",
    "federated_mlp": "mlops.training.families.federated_mlp:FederatedMLPFamily",
    "meta_learner": "mlops.training.families.meta_learner:MetaLearnerFamily",
    "mlp_classifier": "mlops.training.families.mlp_classifier:MLPClassifierFamily",
    "tiny_diffusion": "mlops.training.families.tiny_diffusion:TinyDiffusionFamily",
    "tiny_lm": "mlops.training.families.tiny_lm:TinyLMFamily",
}
FAMILIES = BUILT_IN  # the name earlier code and tests import

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_REF = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}$")
NAME_REF = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")

Kind = Literal["built-in", "entry point", "project code", "module"]


class FamilyError(LookupError):
    """A `model.family` that cannot be found, imported or used; the message says which and why."""


@dataclass(frozen=True)
class FamilySource:
    """Where one family reference leads, found without importing it."""

    ref: str  # as written in the YAML
    kind: Kind
    target: str  # "module:Class"
    origin: str  # for people: "built in", "package acme-models 1.2", "projects/foo/model.py"
    code_dir: Path | None = None  # the folder a project-code module is imported from


def family_names() -> list[str]:
    """Every family that has a name: built-in and published by installed packages."""
    return sorted({*BUILT_IN, *entry_point_families()})


@functools.lru_cache(maxsize=1)
def entry_point_families() -> dict[str, tuple[str, str]]:
    """name -> ("module:Class", "distribution version") of the `mlops.families` entry points.

    Read from installed packages' metadata (no import); cached per process, so a package
    installed while a process runs is seen by the next one (`entry_point_families.cache_clear()`).
    """
    from importlib.metadata import entry_points

    found: dict[str, tuple[str, str]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        where = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
        found.setdefault(point.name, (point.value, where))
    return found


def code_dir_for(projects_dir: Path, project: str) -> Path:
    """`projects_dir/<project>/` when the project has a folder of its own, else `projects_dir`."""
    folder = projects_dir / project
    return folder if folder.is_dir() else projects_dir


def project_code_dir(settings: Settings, project: str) -> Path:
    """The folder a project's `module:Class` family is looked up in first: its own folder when it has one."""
    return code_dir_for(settings.projects_dir, project)


def _module_file(code_dir: Path, module: str) -> Path | None:
    base = code_dir.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def find_family(ref: str, code_dir: Path | None = None) -> FamilySource:
    """Resolve `ref` to its source without importing anything; `FamilyError` if there is none."""
    if ref in BUILT_IN:
        return FamilySource(ref, "built-in", BUILT_IN[ref], "built in")
    if PATH_REF.match(ref):
        module = ref.partition(":")[0]
        if code_dir is not None and (file := _module_file(code_dir, module)) is not None:
            return FamilySource(ref, "project code", ref, str(file), code_dir)
        return FamilySource(ref, "module", ref, f"module {module}")
    if ":" in ref or not NAME_REF.match(ref):
        raise FamilyError(
            f"model family {ref!r} is neither a family name nor a `package.module:Class` path "
            "(e.g. `my_model:MyFamily` for projects/<name>/my_model.py)"
        )
    published = entry_point_families()
    if ref in published:
        target, where = published[ref]
        return FamilySource(ref, "entry point", target, f"package {where}")
    from mlops.config.errors import did_you_mean

    hint = did_you_mean(ref, family_names()) or f"known families: {', '.join(family_names())}"
    raise FamilyError(f"unknown model family {ref!r} ({hint}; or give your own as `module:Class`)")


def _project_package(code_dir: Path) -> str:
    """A package whose __path__ is `code_dir`, named after it: project modules import under it."""
    name = "mlops_project_" + hashlib.sha1(str(code_dir.resolve()).encode()).hexdigest()[:12]
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(code_dir)]
        package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        package.__spec__.submodule_search_locations = [str(code_dir)]
        sys.modules[name] = package
    return name


def load_family_class(source: FamilySource) -> type[ModelFamily]:
    """Import the family class `source` points at and check it is a complete `ModelFamily`."""
    module_name, _, class_name = source.target.partition(":")
    if source.kind == "project code":
        assert source.code_dir is not None
        module_name = f"{_project_package(source.code_dir)}.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything on import
        raise FamilyError(
            f"model family {source.ref!r} ({source.origin}): importing it failed: {type(exc).__name__}: {exc}"
        ) from exc
    family_class = getattr(module, class_name, None)
    if family_class is None:
        raise FamilyError(f"model family {source.ref!r} ({source.origin}): the module has no {class_name!r}")
    from mlops.training.families.contract import contract_problems

    problems = contract_problems(family_class)
    if problems:
        raise FamilyError(
            f"model family {source.ref!r} ({source.origin}) does not fulfil the ModelFamily contract: "
            + "; ".join(problems)
        )
    return family_class


def get_family(ref: str, code_dir: Path | None = None) -> ModelFamily:
    """An instance of the family `ref` names (see the module docstring); `FamilyError` with the reason."""
    return load_family_class(find_family(ref, code_dir))()


def family_for(settings: Settings, project: str, ref: str) -> ModelFamily:
    """The family of project `project` (its `module:Class` looked up in its own code folder first)."""
    return get_family(ref, project_code_dir(settings, project))
