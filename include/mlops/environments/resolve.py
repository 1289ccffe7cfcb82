"""Plan a project's environment: the shared layer when it satisfies `environment.requirements`, an
isolated uv environment when they conflict with it, or the problems that stop either.

1. Requirements whose marker does not hold here are ignored (a plan is for this interpreter/platform).
2. A requirement on a package of the shared layer is satisfied when the shared version is in its
   specifier, and conflicts with it otherwise (six==1.16.0 against the shared six 1.17.0).
3. No conflict: the requirements the shared versions alone do not settle (packages absent from the
   layer, extras) are resolved by uv with every shared pin as a constraint. A package that resolution
   adds is *missing*: an error naming it, to be added to the shared layer (it would otherwise be
   installed nowhere). When they do not resolve with the constraints, they conflict indirectly (a
   dependency needs another version of a shared package): the project is isolated.
4. Isolated: uv resolves the project's requirements with the platform's training runtime
   (`RUNTIME_PACKAGES`, within pyproject.toml's bounds), preferring the shared layer's version of every
   package (uv keeps the versions of an existing output file where they fit), so only what must differ
   differs. A requirement that resolves on its own nowhere is *unresolvable*: an error naming it.

Every uv call is bounded (`UV_TIMEOUT_SECONDS`); an unreachable index is an "unchecked" problem, never
a traceback. Nothing here runs at DAG parse time: `mlops validate` and the environment builder call it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.requirements import Requirement

from mlops.environments.requirements import applies, canonical, parse_requirement
from mlops.environments.shared import (
    RUNTIME_PACKAGES,
    UV_TIMEOUT_SECONDS,
    SharedLayer,
    UvError,
    parse_pins,
    run_uv,
    runtime_requirements,
    shared_layer,
)

PlanKind = Literal["shared", "missing", "isolated", "unresolvable", "unchecked"]
ProblemKind = Literal["missing", "conflict", "stale", "unresolvable", "unchecked"]
NOTE_KINDS = ("conflict", "stale")  # said, not failed: the project still runs


@dataclass(frozen=True)
class Problem:
    """One finding about a requirement (`index` into environment.requirements; None: the list as a whole).

    A conflict (the project runs isolated) and a stale lock are notes; every other kind is an error."""

    kind: ProblemKind
    index: int | None
    package: str  # the package it is about ("" for the whole list)
    message: str
    suggestion: str | None = None

    @property
    def is_error(self) -> bool:
        return self.kind not in NOTE_KINDS


@dataclass(frozen=True)
class EnvironmentPlan:
    """Where the project's steps run: `shared` (the platform's environment), `isolated` (its own uv
    environment: `pinned`), or not at all yet (`missing`, `unresolvable`, `unchecked`: see `errors`)."""

    project: str
    kind: PlanKind
    requirements: tuple[str, ...]
    problems: tuple[Problem, ...] = ()
    pinned: tuple[str, ...] = ()  # isolated: every package of the environment as name==version, sorted
    shared_digest: str = ""  # sha256 of the uv.lock planned against

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def notes(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


def plan_environment(
    project: str,
    requirements: Sequence[str],
    lock_file: Path | None = None,
    timeout: float = UV_TIMEOUT_SECONDS,
) -> EnvironmentPlan:
    """The environment project `project` needs for `requirements` (PEP 508, registry only), planned
    against the shared layer of `lock_file` (the repo's uv.lock). See the module doc for the rules."""
    requirements = tuple(requirements)
    parsed = [parse_requirement(text) for text in requirements]  # ValueError: the schema lets none through

    def plan(kind: PlanKind, problems: list[Problem], pinned: Sequence[str] = (), digest: str = "") -> EnvironmentPlan:
        return EnvironmentPlan(project, kind, requirements, tuple(problems), tuple(pinned), digest)

    try:
        layer = shared_layer(lock_file, timeout)
    except UvError as exc:
        return plan("unchecked", [_unchecked(exc)])
    cwd = layer.lock_file.parent
    active = [(i, r) for i, r in enumerate(parsed) if applies(r)]
    conflicts = [_conflict(i, r, layer) for i, r in active if _shared_version_excluded(r, layer)]
    if not conflicts:
        unsettled = [(i, r) for i, r in active if canonical(r.name) not in layer.pins or r.extras]
        if not unsettled:
            return plan("shared", [], digest=layer.digest)
        try:
            added = _with_shared_constraints([r for _, r in unsettled], layer, cwd, timeout)
        except UvError as exc:
            if exc.unreachable:
                return plan("unchecked", [_unchecked(exc)], digest=layer.digest)
            try:
                conflicts = _indirect_conflicts(unsettled, layer, cwd, timeout, exc)
            except UvError as again:  # unreachable meanwhile
                return plan("unchecked", [_unchecked(again)], digest=layer.digest)
        else:
            missing = _missing(unsettled, added, layer)
            return plan("missing" if missing else "shared", missing, digest=layer.digest)
    try:
        pinned = _isolated(parsed, layer, cwd, timeout)
    except UvError as exc:
        try:
            if exc.unreachable:
                raise
            problems = _unresolvable(parsed, layer, cwd, timeout, exc)
        except UvError as unreachable:
            return plan("unchecked", [_unchecked(unreachable)], digest=layer.digest)
        return plan("unresolvable", problems, digest=layer.digest)
    return plan("isolated", conflicts, pinned, layer.digest)


def _shared_version_excluded(requirement: Requirement, layer: SharedLayer) -> bool:
    version = layer.pins.get(canonical(requirement.name))
    return version is not None and not requirement.specifier.contains(version, prereleases=True)


def _conflict(index: int, requirement: Requirement, layer: SharedLayer) -> Problem:
    name = canonical(requirement.name)
    return Problem("conflict", index, name,
                   f"runs isolated: {requirement} conflicts with the shared layer's {name} {layer.pins[name]}")


def _compile(lines: Sequence[str], cwd: Path, timeout: float, constraints: Sequence[str] = (),
             preferences: Sequence[str] = (), annotate: bool = False) -> str:
    """`uv pip compile` of `lines` for this interpreter: the compiled file's text."""
    with tempfile.TemporaryDirectory(prefix="mlops-env-") as tmp:
        source, output = Path(tmp) / "requirements.in", Path(tmp) / "requirements.txt"
        source.write_text("".join(f"{line}\n" for line in lines))
        output.write_text("".join(f"{line}\n" for line in preferences))  # uv prefers the versions it finds here
        args = ["pip", "compile", str(source), "-o", str(output), "--quiet", "--no-header"]
        args += ["--annotation-style", "line"] if annotate else ["--no-annotate"]
        if constraints:
            (Path(tmp) / "constraints.txt").write_text("".join(f"{line}\n" for line in constraints))
            args += ["--constraint", str(Path(tmp) / "constraints.txt")]
        run_uv(args, cwd, timeout)
        return output.read_text()


def _with_shared_constraints(requirements: list[Requirement], layer: SharedLayer, cwd: Path,
                             timeout: float) -> dict[str, tuple[str, set[str]]]:
    """Resolve with every shared pin as a constraint: the packages it adds to the layer -> (version, the
    packages that pulled each in)."""
    text = _compile([str(r) for r in requirements], cwd, timeout, constraints=layer.constraints(), annotate=True)
    added: dict[str, tuple[str, set[str]]] = {}
    for line in text.splitlines():
        spec, _, via = line.partition("# via")
        name, sep, version = spec.strip().partition("==")
        if sep and canonical(name) not in layer.pins:
            parents = {canonical(v.strip()) for v in via.split(",") if v.strip() and not v.strip().startswith("-")}
            added[canonical(name)] = (version.strip(), parents)
    return added


def _missing(unsettled: list[tuple[int, Requirement]], added: dict[str, tuple[str, set[str]]],
             layer: SharedLayer) -> list[Problem]:
    """One error per requirement that brings packages the shared layer lacks (itself, an extra's, a dependency)."""
    problems = []
    for index, requirement in unsettled:
        name = canonical(requirement.name)
        brought = sorted(package for package in added if package == name or name in _ancestors(package, added))
        if not brought:
            continue  # satisfied by the shared layer (e.g. an extra whose packages it already has)
        pins = {package: f"{package}=={added[package][0]}" for package in brought}
        if name in added:
            others = [pins[p] for p in brought if p != name]
            what = f"package {name} is not in the shared layer this project runs in; {pins[name]} " + (
                f"with {', '.join(others)} " if others else "") + "fits it"
        else:
            what = f"{requirement} needs {', '.join(pins.values())}, not in the shared layer this project runs in"
        problems.append(Problem(
            "missing", index, name, what,
            f"add it: `uv add '{requirement}'` in {layer.lock_file.parent}, then commit pyproject.toml and uv.lock",
        ))
    return problems


def _ancestors(package: str, added: dict[str, tuple[str, set[str]]]) -> set[str]:
    seen, todo = set(), [package]
    while todo:
        for parent in added.get(todo.pop(), ("", set()))[1]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _indirect_conflicts(unsettled: list[tuple[int, Requirement]], layer: SharedLayer, cwd: Path, timeout: float,
                        failure: UvError) -> list[Problem]:
    """Notes for requirements that conflict with the shared layer through their dependencies (each tried
    alone when there are several; the whole list when only together they do not fit)."""
    if len(unsettled) > 1:
        found = []
        for index, requirement in unsettled:
            try:
                _compile([str(requirement)], cwd, timeout, constraints=layer.constraints())
            except UvError as exc:
                if exc.unreachable:
                    raise
                found.append(_indirect(index, requirement, exc))
        if found:
            return found
        return [Problem("conflict", None, "", f"runs isolated: the requirements together do not resolve with the "
                                              f"shared layer: {failure.reason}")]
    index, requirement = unsettled[0]
    return [_indirect(index, requirement, failure)]


def _indirect(index: int, requirement: Requirement, exc: UvError) -> Problem:
    return Problem("conflict", index, canonical(requirement.name),
                   f"runs isolated: {requirement} does not resolve with the shared layer's versions: {exc.reason}")


def _isolated(parsed: list[Requirement], layer: SharedLayer, cwd: Path, timeout: float) -> list[str]:
    """Every package of the isolated environment, pinned: the requirements and the training runtime,
    preferring the shared layer's versions."""
    lines = [str(r) for r in parsed] + runtime_requirements(layer.lock_file.with_name("pyproject.toml"))
    text = _compile(lines, cwd, timeout, preferences=layer.constraints())
    pins = parse_pins(text)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _unresolvable(parsed: list[Requirement], layer: SharedLayer, cwd: Path, timeout: float,
                  failure: UvError) -> list[Problem]:
    """Errors for what does not resolve: each requirement that resolves nowhere on its own, else each that
    excludes the training runtime, else the list as a whole. Raises the UvError of an unreachable index."""
    runtime = runtime_requirements(layer.lock_file.with_name("pyproject.toml"))
    for extra, problem in (([], _nowhere), (runtime, _against_runtime)):
        problems = []
        for index, requirement in enumerate(parsed):
            try:
                _compile([str(requirement), *extra], cwd, timeout, preferences=layer.constraints())
            except UvError as exc:
                if exc.unreachable:
                    raise
                problems.append(problem(index, requirement, exc))
        if problems:
            return problems
    return [Problem("unresolvable", None, "", f"the requirements do not resolve together: {failure.reason}",
                    "relax the requirements that exclude each other")]


def _nowhere(index: int, requirement: Requirement, exc: UvError) -> Problem:
    name = canonical(requirement.name)
    return Problem("unresolvable", index, name, f"{requirement} resolves nowhere: {exc.reason}",
                   f"check the name and versions of {name} on the package index")


def _against_runtime(index: int, requirement: Requirement, exc: UvError) -> Problem:
    runtime = ", ".join(RUNTIME_PACKAGES)
    return Problem("unresolvable", index, canonical(requirement.name),
                   f"{requirement} excludes the platform's training runtime ({runtime}), which an isolated "
                   f"environment needs: {exc.reason}", "relax it to allow the platform's versions")


def _unchecked(exc: UvError) -> Problem:
    if exc.unreachable:
        offline = os.environ.get("UV_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        fix = ("uv runs offline (UV_OFFLINE) and its cache lacks a package: resolve once online" if offline else
               "connect to it, or set UV_OFFLINE=1 to resolve from uv's cache")
        return Problem("unchecked", None, "", f"cannot reach the package index: {exc.reason}",
                       f"{fix}; or skip the check with `mlops validate --no-import`")
    return Problem("unchecked", None, "", f"cannot check the requirements: {exc.reason}")
