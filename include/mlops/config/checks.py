"""The checks of a project that need more than its YAML: its family, its data files, its packages.

Each problem is `(loc, message, suggestion, key)`: the loader places it at its line and column.
DAG parsing runs only what is cheap and imports no user code (a built-in family's names); `mlops
validate` (`deep`) runs everything. A project whose requirements isolate it (issue 14) has its
family imported and checked inside its own environment, where its code's imports exist: the
check is `family_problems`, plain data in and out, so it runs the same there as here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.config.errors import did_you_mean

if TYPE_CHECKING:
    from mlops.config.schema import ProjectConfig

Problem = tuple[tuple[Any, ...], str, "str | None", bool]


def project_checks(file: str, config: ProjectConfig, code_dir: Path, projects_dir: Path, deep: bool) -> list[Problem]:
    """Every problem of the project beyond its schema (see the module docstring)."""
    problems: list[Problem] = federated_problems(config)
    python = None
    if deep:
        environment, python = environment_problems(file, config)
        problems += environment
        problems += data_problems(config, projects_dir)
    arguments = {
        "ref": config.model.family,
        "code_dir": str(code_dir),
        "hyperparameters": config.model.hyperparameters,
        "techniques": list(config.training.techniques),
        "metric": config.evaluation.metric,
        "signature_for": ("serving" if config.serving.enabled else "monitoring" if config.monitoring.enabled else None),
        "deep": deep,
    }
    if python is None:
        found = family_problems(**arguments)
    else:
        from mlops.environments.runner import IsolatedRunError, run_in_environment

        try:
            found = run_in_environment(python, "mlops.config.checks:family_problems", arguments, timeout=300)
        except IsolatedRunError as exc:
            found = [[["model", "family"], f"checking the family in the project's environment failed: {exc}", None, False]]
    problems += [(tuple(loc), message, suggestion, key) for loc, message, suggestion, key in found]
    return problems


def federated_problems(config: ProjectConfig) -> list[Problem]:
    """Rounds average plain weights: only techniques applied once the rounds are over fit a federated model."""
    from mlops.config.schema import POST_TRAINING_TECHNIQUES

    if config.federated is None:
        return []
    during = [t for t in config.training.techniques if t not in POST_TRAINING_TECHNIQUES]
    if not during:
        return []
    index = config.training.techniques.index(during[0])
    return [(("training", "techniques", index),
             f"{', '.join(during)} cannot be combined with `federated`: only {' and '.join(POST_TRAINING_TECHNIQUES)} "
             "(applied once the rounds are over) can", None, False)]


def family_problems(
    ref: str, code_dir: str | None, hyperparameters: dict[str, Any], techniques: list[str], metric: str | None,
    signature_for: str | None, deep: bool,
) -> list[list[Any]]:
    """The family `ref` names, checked: found, imported (only when `deep` for one not built in: user code
    may be slow or broken, and Airflow parses every 30 s), its contract, the project's hyperparameters,
    techniques and metric, and its signature when serving or monitoring (`signature_for`) needs it.

    JSON in and out (`[loc, message, suggestion, key]` lists): it also runs in a project's environment.
    """
    from mlops.training.families import FamilyError, find_family, load_family_class
    from mlops.training.families.contract import signature_problems

    try:
        source = find_family(ref, Path(code_dir) if code_dir else None)
        if source.kind != "built-in" and not deep:
            return []
        family = load_family_class(source)()
    except FamilyError as exc:
        return [[["model", "family"], str(exc), None, False]]
    problems: list[list[Any]] = []
    for key in family.check_hyperparameters(hyperparameters):
        hint = did_you_mean(key, set(family.default_hyperparameters)) or (
            f"{ref} takes: {', '.join(sorted(family.default_hyperparameters)) or 'none'}"
        )
        problems.append([["model", "hyperparameters", key], f"unknown hyperparameter for family {ref!r}", hint, True])
    for i, technique in enumerate(techniques):
        if technique not in family.supported_techniques:
            supported = ", ".join(sorted(family.supported_techniques)) or "none"
            problems.append([["training", "techniques", i], f"family {ref!r} does not support {technique!r}",
                             f"supported: {supported}", False])
    if metric is not None and metric not in family.metrics:
        hint = did_you_mean(metric, set(family.metrics)) or f"{ref} reports: {', '.join(family.metrics)}"
        problems.append([["evaluation", "metric"], f"family {ref!r} does not report metric {metric!r}", hint, False])
    if deep and signature_for:
        try:
            found = signature_problems(family.signature({**family.default_hyperparameters, **hyperparameters}))
        except Exception as exc:  # noqa: BLE001 - user code
            found = [f"signature() raised {type(exc).__name__}: {exc}"]
        problems += [[[signature_for, "enabled"], f"family {ref!r} ({source.origin}): {p}",
                      "serving and drift checks need a valid signature", False] for p in found]
    return problems


def data_problems(config: ProjectConfig, projects_dir: Path) -> list[Problem]:
    """The files a local `data.path` names exist, can be read and share one format.

    A URL is left to the `pull_data` task (reaching a cloud is no validation step); reading the
    rows is the loaders' job at training time.
    """
    from mlops.data.dvc_workspace import DataError
    from mlops.data.file_source import is_url, list_files, split_glob
    from mlops.data.loaders import DataFormatError, data_format

    path = config.data.path
    if config.data.source != "files" or path is None or is_url(path):
        return []
    local = Path(path).expanduser()
    base, pattern = split_glob(str(local if local.is_absolute() else projects_dir.parent / local))
    try:
        files = list_files(config.name, path, Path(base), pattern)
        data_format([relative for _, relative in files], f"project {config.name}: data.path {path!r}")
    except (DataError, DataFormatError) as exc:
        return [(("data", "path"), str(exc), None, False)]
    return []


def environment_problems(file: str, config: ProjectConfig) -> tuple[list[Problem], Path | None]:
    """`environment.requirements` against the shared layer (the repo's uv.lock), with uv; and the
    interpreter of the project's own environment when they isolate it (built now if missing).

    Errors: a package the shared layer lacks, a requirement that resolves nowhere, an index that
    cannot be reached. A conflict is no error (the project runs isolated; the lock beside the YAML
    records its environment, `mlops validate` prints it as a note).
    """
    import os

    from mlops.environments.lock import lock_environment, lock_path

    if not config.environment.requirements and not os.path.lexists(lock_path(file)):
        return [], None  # (a lock left from earlier requirements is removed below)
    plan = lock_environment(file, config.name, config.environment.requirements)
    problems: list[Problem] = [
        (("environment", "requirements") + ((p.index,) if p.index is not None else ()), p.message, p.suggestion, False)
        for p in plan.errors
    ]
    if problems or plan.kind != "isolated":
        return problems, None
    from mlops.environments.cache import EnvironmentBuildError, ensure_environment
    from mlops.environments.lock import env_hash
    from mlops.settings import get_settings

    try:
        return problems, ensure_environment(get_settings(), list(plan.pinned), env_hash(list(plan.pinned)))
    except EnvironmentBuildError as exc:
        return [(("environment", "requirements"), f"building the project's environment failed: {exc}", None, False)], None
